package WaTest::Redis;

# A throw-away redis-server on a free loopback port, and a minimal RESP
# client for assertions.

use strict;
use warnings;

use File::Temp qw(tempdir);
use IO::Socket::INET;
use Time::HiRes qw(sleep);

use WaTest::Process;


sub start {
    my ($class, %o) = @_;
    my $self = bless { port => $o{port} // WaTest::free_port(),
                       dir => tempdir('wa-redis-XXXXXX', TMPDIR => 1,
                                      CLEANUP => 1),
                       appendonly => $o{appendonly} // 'no' }, $class;
    $self->_spawn;
    return $self;
}


sub _spawn {
    my ($self) = @_;
    $self->{pid} = WaTest::Process::spawn(
        argv => [ 'redis-server', '--port', $self->{port},
                  '--bind', '127.0.0.1', '--dir', $self->{dir},
                  '--save', '', '--appendonly', $self->{appendonly},
                  '--daemonize', 'no' ],
        stdout => "$self->{dir}/redis.log");
    for (1 .. 200) {
        my $r = eval { $self->cmd('PING') };
        return if defined $r && $r eq 'PONG';
        sleep 0.025;
    }
    die "redis-server did not start: " . `tail -5 $self->{dir}/redis.log`;
}


sub port { $_[0]{port} }

sub addr { "127.0.0.1:$_[0]{port}" }


sub stop {
    my ($self) = @_;
    delete $self->{sock};
    kill 'CONT', $self->{pid} if $self->{pid};
    WaTest::Process::stop(delete $self->{pid}, 'TERM');
}


# Same port, new process: Redis coming back after an outage.
sub restart {
    my ($self) = @_;
    $self->stop;
    $self->_spawn;
}


sub freeze { kill 'STOP', $_[0]{pid} }

sub thaw { kill 'CONT', $_[0]{pid} }


# cmd('XRANGE', 'wa:events', '-', '+') -> Perl data (arrays, strings)
sub cmd {
    my ($self, @args) = @_;
    $self->{sock} //= IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                            PeerPort => $self->{port},
                                            Timeout => 5)
        or die "connect to redis: $!";
    my $s = $self->{sock};
    my $out = '*' . @args . "\r\n";
    $out .= '$' . length($_) . "\r\n$_\r\n" for @args;
    print {$s} $out;
    my $r = _read($s);
    delete $self->{sock} unless defined $r;
    return $r;
}


sub _read {
    my ($s) = @_;
    my $line = <$s>;
    die "redis connection closed" unless defined $line;
    $line =~ s/\r\n$//;
    my ($type, $rest) = (substr($line, 0, 1), substr($line, 1));
    return $rest if $type eq '+' || $type eq ':';
    die "redis error: $rest" if $type eq '-';
    if ($type eq '$') {
        return undef if $rest < 0;
        my $buf = '';
        while (length $buf < $rest + 2) {
            read($s, $buf, $rest + 2 - length $buf, length $buf) or last;
        }
        return substr($buf, 0, $rest);
    }
    if ($type eq '*') {
        return undef if $rest < 0;
        return [ map { _read($s) } 1 .. $rest ];
    }
    die "bad RESP: $line";
}


# The wa:events entries as [{id, body, rcvd, rid}] in stream order.
sub events {
    my ($self, $key) = @_;
    my $r = $self->cmd('XRANGE', $key // 'wa:events', '-', '+');
    return [ map { { id => $_->[0], @{ $_->[1] } } } @$r ];
}


sub DESTROY { $_[0]->stop if $_[0]{pid} }

1;
