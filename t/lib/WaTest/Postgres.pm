package WaTest::Postgres;

# A throw-away PostgreSQL cluster on a free loopback port, run as the
# postgres user (PostgreSQL refuses root), trust auth, one database "wa".

use strict;
use warnings;

use File::Temp qw(tempdir);
use Time::HiRes qw(sleep);

use WaTest::Process;


my ($BIN) = grep { -x "$_/initdb" } sort { $b cmp $a }
                 glob '/usr/lib/postgresql/*/bin';


sub start {
    my ($class, %o) = @_;
    die "PostgreSQL server binaries not found" unless $BIN;
    my $dir = tempdir('wa-pg-XXXXXX', TMPDIR => 1, CLEANUP => 1);
    chmod 0755, $dir;
    my (undef, undef, $uid, $gid) = getpwnam('postgres')
        or die "no postgres user";
    chown $uid, $gid, $dir;
    my $self = bless { dir => $dir, port => $o{port} // WaTest::free_port() },
                     $class;
    my $out = `su postgres -s /bin/sh -c '$BIN/initdb -D $dir/data -A trust -U postgres --no-sync -E UTF8 --locale=C.UTF-8' 2>&1`;
    die "initdb failed: $out" if $?;
    $self->_spawn;
    $self->psql_ok('postgres', 'CREATE DATABASE wa');
    return $self;
}


sub _spawn {
    my ($self) = @_;
    $self->{pid} = WaTest::Process::spawn(
        user => 'postgres',
        argv => [ "$BIN/postgres", '-D', "$self->{dir}/data",
                  '-p', $self->{port}, '-c', 'listen_addresses=127.0.0.1',
                  '-c', "unix_socket_directories=$self->{dir}",
                  '-c', 'fsync=off', '-c', 'synchronous_commit=off',
                  '-c', 'full_page_writes=off' ],
        stdout => "$self->{dir}/postgres.log");
    for (1 .. 200) {
        return if $self->psql('postgres', 'SELECT 1', quiet => 1) =~ /^1$/m;
        sleep 0.05;
    }
    die "postgres did not start: " . `tail -5 $self->{dir}/postgres.log`;
}


sub port { $_[0]{port} }

sub conninfo { "host=127.0.0.1 port=$_[0]{port} dbname=wa user=postgres" }


# psql($db, $sql) -> unaligned, tuples-only output (stderr included)
sub psql {
    my ($self, $db, $sql, %o) = @_;
    # "the database system is starting up" while waiting is not news
    open my $saved, '>&', \*STDERR;
    open STDERR, '>', '/dev/null' if $o{quiet};
    open my $p, '-|', 'psql', '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1',
         '-h', '127.0.0.1', '-p', $self->{port}, '-U', 'postgres', '-d', $db,
         '-c', $sql
        or die $!;
    open STDERR, '>&', $saved;
    local $/;
    my $out = <$p> // '';
    close $p;
    return $out;
}


sub psql_ok {
    my ($self, $db, $sql) = @_;
    my $out = $self->psql($db, $sql);
    die "psql failed: $sql\n$out" if $?;
    return $out;
}


sub query { my ($self, $sql) = @_; return $self->psql_ok('wa', $sql) }


# stop([$sig]): SIGINT by default, the fast shutdown "pg_ctl stop -m fast"
# does; SIGQUIT is the immediate one, a crash as clients see it.
sub stop {
    my ($self, $sig) = @_;
    WaTest::Process::stop(delete $self->{pid}, $sig // 'INT', 30);
}


sub restart {
    my ($self, $sig) = @_;
    $self->stop($sig);
    $self->_spawn;
}


sub DESTROY { $_[0]->stop if $_[0]{pid} }

1;
