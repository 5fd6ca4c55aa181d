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
use JSON::PP;
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
    return $class->fed($path, method => $method, sock => $s, port => $port);
}


# fed($path, method => ..., sock => ..., port => ...): a client with no
# bytes yet.  Without a sock, its bytes come from elsewhere: head() and
# take() feed one stream of an HTTP/2 connection (WaTest::SseH2).
sub fed {
    my ($class, $path, %o) = @_;
    return bless { sock => $o{sock}, port => $o{port}, path => $path,
                   method => $o{method} // 'GET', in => '', body => '',
                   text => '', frames => [], comments => [], status => undef,
                   headers => undef, chunked => 0, left => undef,
                   ended => 0, eof => 0, t0 => time }, $class;
}


# head(name => value, ...): a response head as HTTP/2 gives it
sub head {
    my ($self, @fields) = @_;
    my %h;
    while (my ($k, $v) = splice @fields, 0, 2) {
        $h{ lc $k } = exists $h{ lc $k } ? "$h{ lc $k }, $v" : $v;
    }
    $self->{status} = delete $h{':status'};
    $self->{headers} = \%h;
}


# take($bytes): body bytes, cut into frames and comments for a stream
sub take {
    my ($self, $got) = @_;
    $self->{body} .= $got;
    $self->{text} .= $got;
    $self->parse_events if ($self->{headers}{'content-type'} // '')
                           =~ m{^text/event-stream};
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

    $self->take($got);
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


# --- updates as the worker writes them, and who must get each ----------

my @PHONES = qw(p1 p2 p3);
my $JSON = JSON::PP->new->canonical;
my $PRETTY = JSON::PP->new->canonical->pretty;

# The first bytes of every stream: a comment and the retry hint.
our $HELLO = ": whatsapp events\nretry: 2000\n\n";

# publish($redis, $event, $data, %route): XADD to wa:updates as the worker
# does ($data: text, or a structure to encode); the update {id, event,
# text, data as a client joins its data lines, %route}.
sub publish {
    my ($redis, $event, $data, %route) = @_;
    my $text = ref $data ? $JSON->encode($data) : $data;
    my $id = $redis->cmd('XADD', 'wa:updates', '*', 'event', $event,
                         'data', $text);
    (my $joined = $text) =~ s/\r\n?/\n/g;
    return { id => $id, event => $event, text => $text, data => $joined,
             %route };
}

# [id, event, data] of each update or frame: what a client got, or of
# what it should get
sub got { [ map { [ $_->{id}, $_->{event}, $_->{data} ] } @_ ] }

# random_update($n, $publish): an update as the worker writes them, given
# to $publish->(event, data text, %route) whose answer it returns.
# Message events name their number, conversation and assignee;
# conversation.update carries the conversation; template.status has no
# number.  Some data spans several lines (LF or CRLF).
sub random_update {
    my ($n, $publish) = @_;
    my $type = (qw(message.new message.new message.status message.status
                   conversation.update template.status))[ int rand 6 ];
    my $phone = $PHONES[ int rand @PHONES ];
    my $conv = "conv-$phone-" . (1 + int rand 2);
    my $assignee = (qw(ag1 ag2 ag3), undef)[ int rand 4 ];
    my ($data, %route);
    if ($type eq 'template.status') {
        $data = { template => "t$n", status => 'APPROVED' };
    } elsif ($type eq 'conversation.update') {
        $data = { phone_number_id => $phone,
                  conversation => { id => $conv, assignee => $assignee,
                                    n => $n } };
        %route = (phone => $phone, conversation => $conv,
                  assignee => $assignee);
    } else {
        $data = { phone_number_id => $phone, conversation_id => $conv,
                  assignee => $assignee,
                  message => { n => $n, text => "hello $n" } };
        %route = (phone => $phone, conversation => $conv,
                  assignee => $assignee);
    }
    my $text = $n % 10 == 0 ? $PRETTY->encode($data)
             : $n % 15 == 0 ? $PRETTY->encode($data) =~ s/\n/\r\n/gr
             : $JSON->encode($data);
    return $publish->($type, $text, %route);
}

# learn($spec): what sees() needs of a client's spec, from its JWT
# claims ({claims}) or its scope headers ({hdr}: X-Agent, X-Phones,
# X-Assigned), and its query ({query}).
sub learn {
    my ($s) = @_;
    my $cl = $s->{claims};
    if ($cl) {
        $s->{agent} = $cl->{sub} // 'ag1';
        $s->{phones} = ref $cl->{phone_number_ids}
                     ? $cl->{phone_number_ids} : undef;
        $s->{assigned_only} = $cl->{assigned_only} ? 1 : 0;
    } else {
        $s->{agent} = $s->{hdr}{'X-Agent'};
        $s->{phones} = $s->{hdr}{'X-Phones'} eq '*' ? undef
                     : [ split /[, ]+/, $s->{hdr}{'X-Phones'} ];
        $s->{assigned_only} = ($s->{hdr}{'X-Assigned'} // '') eq 'yes';
    }
    my $q = $s->{query} // {};
    $s->{phone} = $q->{phone_number_id};
    $s->{conversation} = $q->{conversation_id};
    $s->{events} = [ split /,/, $q->{events} ] if $q->{events};
}

# sees($spec, $update): the rules.  A scope of some numbers sees only
# theirs; an update of no number goes only to who sees every number,
# unfiltered by number or conversation, and not assigned-only;
# assigned-only sees only what is assigned to its agent; then the filters.
sub sees {
    my ($s, $u) = @_;
    if ($s->{phones}) {
        return 0 unless defined $u->{phone}
                        && grep { $_ eq $u->{phone} } @{ $s->{phones} };
    } elsif (!defined $u->{phone}) {
        return 0 if $s->{assigned_only} || defined $s->{phone}
                    || defined $s->{conversation};
    }
    return 0 if $s->{assigned_only}
                && !(defined $u->{assignee} && $u->{assignee} eq $s->{agent});
    return 0 if defined $s->{phone}
                && !(defined $u->{phone} && $u->{phone} eq $s->{phone});
    return 0 if defined $s->{conversation}
                && !(defined $u->{conversation}
                     && $u->{conversation} eq $s->{conversation});
    return 0 if $s->{events} && !grep { $_ eq $u->{event} } @{ $s->{events} };
    return 1;
}


sub DESTROY { $_[0]->close }

1;
