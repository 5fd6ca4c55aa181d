package WaTest::Worker;

# whatsapp-worker (the ASan/UBSan build) against a test Redis and
# PostgreSQL, configured through WA_* environment variables.

use strict;
use warnings;

use File::Spec;
use File::Temp qw(tempdir);
use Test::More;
use Time::HiRes qw(time sleep);

use WaTest::Process;


sub binary {
    return WaTest::built('WA_WORKER', 'build/asan/whatsapp-worker');
}


sub env {
    my ($self) = @_;
    return {
        WA_REDIS_PORT => $self->{redis}->port,
        WA_POSTGRES_CONNINFO => $self->{pg}->conninfo,
        WA_WORKER_SQL_DIR => File::Spec->rel2abs('sql'),
        WA_WORKER_CONSUMER => $self->{consumer},
        WA_WORKER_BLOCK_MS => 200,
        %{ $self->{env} // {} },
        ASAN_OPTIONS => "log_path=$self->{dir}/sanitizer:detect_leaks=1",
        UBSAN_OPTIONS => "log_path=$self->{dir}/sanitizer:print_stacktrace=1",
    };
}


# new(redis => ..., pg => ..., consumer => 'w1', env => {...})
sub new {
    my ($class, %o) = @_;
    my $self = bless { consumer => 'w1', %o,
                       dir => tempdir('wa-worker-XXXXXX', TMPDIR => 1,
                                      CLEANUP => 1) }, $class;
    return $self;
}


sub migrate {
    my ($self) = @_;
    my $env = $self->env;
    local @ENV{ keys %$env } = values %$env;
    my $bin = binary();
    my $out = `$bin migrate 2>&1`;
    return ($? == 0, $out);
}


sub start {
    my ($self, @args) = @_;
    $self->{pid} = WaTest::Process::spawn(argv => [ binary(), @args ],
                                          env => $self->env,
                                          stdout => "$self->{dir}/worker.log");
    WaTest::wait_until(sub { $self->log =~ /starting/ }, 10)
        or die "worker did not start:\n" . $self->log;
    return $self;
}


sub log { WaTest::slurp("$_[0]{dir}/worker.log") // '' }

sub pid { $_[0]{pid} }


# stop('TERM') -> exit status
sub stop {
    my ($self, $sig) = @_;
    return unless $self->{pid};
    return WaTest::Process::stop(delete $self->{pid}, $sig // 'TERM', 30);
}


sub kill9 { $_[0]->stop('KILL') }


# Waits until the stream has no entry left unacknowledged (failing at
# once should the worker die).
sub drained {
    my ($self, $timeout) = @_;
    my $r = $self->{redis};
    return WaTest::wait_until(sub {
        die "worker died:\n" . $self->log
            unless WaTest::Process::alive($self->{pid});
        my $p = eval { $r->cmd('XPENDING', 'wa:events', 'workers') };
        my $len = eval { $r->cmd('XLEN', 'wa:events') } // 1;
        $p && $p->[0] == 0 && $len == 0;
    }, $timeout // 30);
}


sub check_logs {
    my ($self, $name) = @_;
    WaTest::check_sanitizer($self->{dir}, 'sanitizer*', $name // 'worker');
}


sub DESTROY { $_[0]->stop('KILL') if $_[0]{pid} }

1;
