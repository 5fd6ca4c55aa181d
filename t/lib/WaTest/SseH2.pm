package WaTest::SseH2;

# Server-Sent Events streams multiplexed on one HTTP/2 connection (h2c
# with prior knowledge), as a browser opens its EventSources over one
# connection.  Each stream is a WaTest::Sse client fed by the connection.
#
#   my $h2 = WaTest::SseH2->connect($port);
#   my $s = $h2->stream('/events', headers => { authorization => ... });
#   $h2->wait(sub { $s->frames >= 3 }, 5) or fail;
#   $h2->cancel($s);         # RST_STREAM (CANCEL): that stream only
#   $h2->hold($s);           # no more WINDOW_UPDATE for it: it stalls
#
# Protocol::HTTP2 (Debian's libprotocol-http2-perl) does the framing, HPACK
# and flow control; this file only moves its bytes, and reads nothing
# unless asked.

use strict;
use warnings;

use IO::Select;
use IO::Socket::INET;
use Protocol::HTTP2::Client;
use Protocol::HTTP2::Constants qw(:errors);
use Time::HiRes qw(time);
use WaTest::Sse;


# Streams held: their window is never reopened, as a client whose reader
# stopped.  Protocol::HTTP2 reopens every window itself; this is the one
# place it is told not to.
my %held;
{
    no warnings 'redefine';
    my $reopen = \&Protocol::HTTP2::Stream::stream_fcw_update;
    *Protocol::HTTP2::Stream::stream_fcw_update = sub {
        my ($con, $id) = @_;
        return if $held{"$con $id"};
        return $reopen->(@_);
    };
}


sub connect {
    my ($class, $port) = @_;
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                     PeerPort => $port, Timeout => 5)
        or die "connect to $port: $!";
    binmode $sock;
    my $self = bless { sock => $sock, port => $port, eof => 0,
                       streams => [] }, $class;
    $self->{client} = Protocol::HTTP2::Client->new(keepalive => 1);
    return $self;
}


# stream($path, method => 'GET', headers => {...}): a request on the
# connection, sent at once; its response arrives as the connection is read.
sub stream {
    my ($self, $path, %o) = @_;
    my $method = $o{method} // 'GET';
    my $s = WaTest::Sse->fed($path, method => $method, port => $self->{port});
    my %h = (accept => 'text/event-stream',
             map { (lc $_ => $o{headers}{$_}) } keys %{ $o{headers} // {} });

    $self->{client}->request(
        ':scheme' => 'http', ':authority' => "127.0.0.1:$self->{port}",
        ':path' => $path, ':method' => $method,
        headers => [ map { ($_ => $h{$_}) } sort keys %h ],
        on_headers => sub { $s->head(@{ $_[0] }); 1 },
        on_data => sub { $s->take($_[0]); 1 },
        on_done => sub { $s->{ended} = $s->{eof} = 1 },
        on_error => sub { $s->{reset} = $_[0]; $s->{eof} = 1 });

    $s->{h2_id} = $self->{client}{con}{last_stream};
    push @{ $self->{streams} }, $s;
    $self->flush;
    return $s;
}


sub eof { $_[0]{eof} }


sub cancel {
    my ($self, $s) = @_;
    $self->{client}{con}->stream_error($s->{h2_id}, CANCEL);
    $s->{eof} = 1;
    $self->flush;
}


sub hold {
    my ($self, $s) = @_;
    $held{"$self->{client}{con} $s->{h2_id}"} = 1;
}


sub flush {
    my ($self) = @_;
    return if $self->{eof};
    while (defined(my $frame = $self->{client}->next_frame)) {
        while (length $frame) {
            my $n = syswrite $self->{sock}, $frame;
            if (!defined $n) {
                $self->gone("$!");
                return;
            }
            substr($frame, 0, $n) = '';
        }
    }
}


# Reads what is there (waiting up to $timeout for something) and answers
# it (SETTINGS and PING acknowledgements, WINDOW_UPDATEs).
sub pump {
    my ($self, $timeout) = @_;
    return 0 if $self->{eof};
    $self->flush;
    return undef unless IO::Select->new($self->{sock})->can_read($timeout);
    my $n = sysread $self->{sock}, my $buf, 262144;
    if (!$n) {
        $self->gone(defined $n ? 'EOF' : "$!");
        return 0;
    }
    $self->{client}->feed($buf);
    $self->flush;
    return $n;
}


# The connection ended: so did every stream on it.
sub gone {
    my ($self, $why) = @_;
    $self->{eof} = $why;
    $_->{eof} ||= 1 for @{ $self->{streams} };
}


# Reads until $cond->() holds; false if it did not within $timeout.
sub wait {
    my ($self, $cond, $timeout) = @_;
    my $deadline = time + ($timeout // 10);
    while (1) {
        return 1 if $cond->();
        return 0 if $self->{eof};
        my $left = $deadline - time;
        return 0 if $left <= 0;
        $self->pump($left > 0.2 ? 0.2 : $left);
    }
}


sub close {
    my ($self) = @_;
    return if $self->{closed}++;
    CORE::close($self->{sock});
    $self->gone('closed');
}


sub DESTROY { $_[0]->close }

1;
