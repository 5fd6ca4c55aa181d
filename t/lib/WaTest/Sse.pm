package WaTest::Sse;

# A Server-Sent Events client over a raw socket, as a browser's
# EventSource reads a stream: the response head, then the chunked body
# decoded as it arrives and cut into frames ({id, event, data, lines})
# and comments (": heartbeat").
#
#   my $c = WaTest::Sse->connect($port, "/events", headers => {...});
#   $c->wait_frames(3, 5) or fail;
#   my @ids = $c->ids;
#   WaTest::Sse::wait_all(\@clients, sub { ... }, 10);
#
# Nothing is read unless asked (wait, wait_all, pump): a client that is
# not asked is one that stopped reading.

use strict;
use warnings;

use Errno qw(EAGAIN EWOULDBLOCK);
use IO::Select;
use IO::Socket::INET;
use Socket qw(IPPROTO_TCP PF_INET SOCK_STREAM SOL_SOCKET SO_RCVBUF
              inet_aton pack_sockaddr_in);
use Time::HiRes qw(time);


# open($port, $path, method => 'GET', headers => {...}, rcvbuf => bytes,
#      raw => 'a whole request'): connects and sends the request; reads
# nothing yet.  Dies if it cannot connect.
sub open {
    my ($class, $port, $path, %o) = @_;
    my $s;
    if ($o{rcvbuf}) {
        # before connect(), so the window offered is small from the start
        CORE::socket($s, PF_INET, SOCK_STREAM, IPPROTO_TCP)
            or die "socket: $!";
        setsockopt($s, SOL_SOCKET, SO_RCVBUF, $o{rcvbuf})
            or die "SO_RCVBUF: $!";
        CORE::connect($s, pack_sockaddr_in($port, inet_aton('127.0.0.1')))
            or die "connect to $port: $!";
        bless $s, 'IO::Socket::INET';
    } else {
        $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                   Timeout => 5)
            or die "connect to $port: $!";
    }
    binmode $s;
    my $method = $o{method} // 'GET';
    my $req = $o{raw} // do {
        my $h = { Host => 'localhost', Accept => 'text/event-stream',
                  %{ $o{headers} // {} } };
        my $r = "$method $path HTTP/1.1\r\n";
        $r .= "$_: $h->{$_}\r\n" for sort keys %$h;
        "$r\r\n";
    };
    while (length $req) {
        my $n = syswrite $s, $req;
        die "send to $port: $!" unless defined $n;
        substr($req, 0, $n) = '';
    }
    return bless { sock => $s, port => $port, path => $path,
                   method => $method, in => '', body => '', text => '',
                   frames => [], comments => [], status => undef,
                   headers => undef, chunked => 0, left => undef,
                   ended => 0, eof => 0, t0 => time }, $class;
}


# open() and wait for the response head; for a 200, for the hello too.
sub connect {
    my ($class, $port, $path, %o) = @_;
    my $c = $class->open($port, $path, %o);
    $c->wait_hello($o{timeout} // 5);
    return $c;
}


# connect() to the given worker process (the X-Worker header, from
# "add_header X-Worker $pid;"), if one of 40 tries lands there; else the
# last try.  Without a pid: the first.
sub connect_on {
    my ($class, $pid, $port, $path, %o) = @_;
    for my $try (1 .. 40) {
        my $c = $class->connect($port, $path, %o);
        return $c if !defined $pid || ($c->worker // '') eq $pid
                     || $try == 40;
        $c->close;
    }
}


sub sock { $_[0]{sock} }

sub status { $_[0]{status} }

sub header { $_[0]{headers} ? $_[0]{headers}{ lc $_[1] } : undef }

sub frames { @{ $_[0]{frames} } }

sub ids { map { $_->{id} } @{ $_[0]{frames} } }

# the id of the last frame (what a browser sends as Last-Event-ID)
sub last_id { my $f = $_[0]{frames}; @$f ? $f->[-1]{id} : undef }

sub comments { @{ $_[0]{comments} } }

# the decoded body as received so far
sub body { $_[0]{body} }

# the last chunk arrived: the server ended the response cleanly
sub ended { $_[0]{ended} }

# the connection is closed (by the server, or reset)
sub eof { $_[0]{eof} }

sub worker { $_[0]->header('x-worker') }


sub close {
    my ($self) = @_;
    return if !$self->{sock} || $self->{closed}++;
    CORE::close($self->{sock});
    $self->{eof} = 1;
}


# Reads what is there (waiting up to $timeout for something); returns
# the bytes read, 0 at EOF, undef if nothing came.
sub pump {
    my ($self, $timeout) = @_;
    return 0 if $self->{eof};
    my $sel = IO::Select->new($self->{sock});
    return undef unless $sel->can_read($timeout // 0);
    return $self->read_now;
}


sub read_now {
    my ($self) = @_;
    return 0 if $self->{eof};
    my $buf = '';
    my $n = sysread $self->{sock}, $buf, 262144;
    if (!defined $n) {
        return undef if $! == EAGAIN || $! == EWOULDBLOCK;
        $self->{error} = "$!";            # reset by the server
        $n = 0;
    }
    if ($n == 0) {
        $self->{eof} = 1;
        return 0;
    }
    $self->feed($buf);
    return $n;
}


sub feed {
    my ($self, $data) = @_;
    $self->{in} .= $data;

    if (!defined $self->{status}) {
        my $end = index $self->{in}, "\r\n\r\n";
        return if $end < 0;
        my $head = substr $self->{in}, 0, $end + 4, '';
        my ($line, @lines) = split /\r\n/, $head;
        ($self->{status}) = $line =~ m{^HTTP/1\.[01] (\d{3})}
            or die "not an HTTP response: $line";
        $self->{status_line} = $line;
        my %h;
        for (@lines) {
            my ($k, $v) = /^([^:]+):\s*(.*?)\s*$/ or next;
            $h{ lc $k } = exists $h{ lc $k } ? "$h{ lc $k }, $v" : $v;
        }
        $self->{headers} = \%h;
        $self->{head} = $head;
        $self->{chunked} = ($h{'transfer-encoding'} // '') =~ /chunked/i;
        $self->{left} = $h{'content-length'};
        $self->{ended} = 1 if $self->{method} eq 'HEAD'
                              || $self->{status} =~ /^(?:1|204|304)/;
    }

    my $got = '';
    if ($self->{ended}) {
        $self->{trailing} .= $self->{in};        # nothing may follow
        $self->{in} = '';
    } elsif ($self->{chunked}) {
        while (1) {
            if ($self->{last_chunk}) {           # "0\r\n" seen: then "\r\n"
                last if length $self->{in} < 2;
                die "trailer after the last chunk: $self->{in}"
                    unless substr($self->{in}, 0, 2, '') eq "\r\n";
                $self->{ended} = 1;
                $self->{trailing} = $self->{in}; # nothing may follow
                $self->{in} = '';
                last;
            }
            if (defined $self->{chunk}) {        # inside a chunk
                my $take = $self->{chunk} < length $self->{in}
                         ? $self->{chunk} : length $self->{in};
                $got .= substr $self->{in}, 0, $take, '';
                $self->{chunk} -= $take;
                last if $self->{chunk};
                delete $self->{chunk};
                $self->{crlf} = 1;
            }
            if ($self->{crlf}) {                 # the CRLF after its data
                last if length $self->{in} < 2;
                die "bad chunk end: " . substr($self->{in}, 0, 2)
                    unless substr($self->{in}, 0, 2, '') eq "\r\n";
                delete $self->{crlf};
            }
            my $eol = index $self->{in}, "\r\n";
            last if $eol < 0;
            my $line = substr $self->{in}, 0, $eol + 2, '';
            my ($hex) = $line =~ /^([0-9a-fA-F]+)/
                or die "bad chunk size line: $line";
            my $size = hex $hex;
            if ($size == 0) {
                $self->{last_chunk} = 1;
                next;
            }
            $self->{chunk} = $size;
        }
    } elsif (defined $self->{left}) {
        my $take = $self->{left} < length $self->{in}
                 ? $self->{left} : length $self->{in};
        $got = substr $self->{in}, 0, $take, '';
        $self->{left} -= $take;
        $self->{ended} = 1 if $self->{left} == 0;
    } else {
        $got = $self->{in};
        $self->{in} = '';
    }

    $self->{body} .= $got;
    $self->{text} .= $got;
    $self->parse_events if ($self->{headers}{'content-type'} // '')
                           =~ m{^text/event-stream};
}


# Blocks end with a blank line; the module writes "\n" line ends only.
sub parse_events {
    my ($self) = @_;
    while ((my $end = index $self->{text}, "\n\n") >= 0) {
        my $block = substr $self->{text}, 0, $end + 2, '';
        substr($block, -2) = '';
        my (%f, @data);
        for my $line (split /\n/, $block) {
            next if $line eq '';
            if ($line =~ /^:/) {
                (my $text = $line) =~ s/^: ?//;
                push @{ $self->{comments} }, $text;
                next;
            }
            my ($k, $v) = $line =~ /^([^:]*):? ?(.*)$/s;
            if ($k eq 'data') {
                push @data, $v;
            } else {
                $f{$k} = $v;
            }
        }
        next unless %f || @data;
        if (exists $f{retry} && !exists $f{id} && !exists $f{event} && !@data) {
            $self->{retry} = $f{retry};
            next;
        }
        push @{ $self->{frames} }, { %f, lines => \@data,
                                     data => join "\n", @data };
    }
}


# Reads until $cond->($self) holds; false if it did not within $timeout.
sub wait {
    my ($self, $cond, $timeout) = @_;
    my $deadline = time + ($timeout // 10);
    while (1) {
        return 1 if $cond->($self);
        return 0 if $self->{eof};
        my $left = $deadline - time;
        return 0 if $left <= 0;
        $self->pump($left > 0.2 ? 0.2 : $left);
    }
}


sub wait_frames {
    my ($self, $n, $timeout) = @_;
    return $self->wait(sub { @{ $_[0]{frames} } >= $n }, $timeout);
}


# The head; for a stream, its first bytes too (it is subscribed by then).
sub wait_hello {
    my ($self, $timeout) = @_;
    return $self->wait(sub {
        my $c = $_[0];
        defined $c->{status}
            && ($c->{status} != 200 || $c->{ended}
                || ($c->{headers}{'content-type'} // '') !~ /event-stream/
                || index($c->{body}, "\n\n") >= 0);
    }, $timeout);
}


sub wait_eof {
    my ($self, $timeout) = @_;
    return $self->wait(sub { $_[0]{eof} }, $timeout);
}


# Reads every client at once until $cond->() holds or $timeout passes.
sub wait_all {
    my ($clients, $cond, $timeout) = @_;
    my $deadline = time + ($timeout // 10);
    my %by = map { (fileno($_->{sock}) => $_) } grep { !$_->{eof} } @$clients;
    while (1) {
        return 1 if $cond->();
        my $sel = IO::Select->new(map { $_->{sock} }
                                  grep { !$_->{eof} } values %by);
        my $left = $deadline - time;
        return 0 if $left <= 0 || !$sel->count;
        for my $s ($sel->can_read($left > 0.2 ? 0.2 : $left)) {
            $by{ fileno $s }->read_now;
        }
    }
}


sub DESTROY { $_[0]->close }

1;
