# The agent API's PostgreSQL pool under pressure and failure: requests
# beyond the pool wait and succeed, a full queue is a fast 503, a query
# slower than whatsapp_postgres_timeout a 504, clients leaving mid-query
# harm nothing, and PostgreSQL stopped, restarted or late is a fast 503
# and then 200 again, all without an NGINX reload.
use strict;
use warnings;
use IO::Socket::INET;
use IPC::Open3;
use Socket qw(SOL_SOCKET SO_LINGER);
use Test::More;
use Time::HiRes qw(time sleep);
use WaTest;

my $pg = WaTest::Postgres->start;
my $redis = WaTest::Redis->start;
my ($ok, $out) = WaTest::Worker->new(redis => $redis, pg => $pg)->migrate;
ok($ok, 'migrations applied') or BAIL_OUT($out);

$pg->query(<<'SQL');
INSERT INTO phone_numbers (phone_number_id) VALUES ('pa');
INSERT INTO conversations (id, phone_number_id, customer_id, last_message_at)
SELECT wa_conversation_id('pa', c), 'pa', c, now()
FROM (VALUES ('491510001'), ('491510002')) v (c);
SQL

my $nginx = WaTest::Nginx->start(
    workers => 1,
    http    => 'whatsapp_postgres "' . $pg->conninfo . '" pool=2 queue=4'
             . ' connect_timeout=1s;',
    server  => 'location /api/ { whatsapp_api; whatsapp_auth off;'
             . '   whatsapp_postgres_timeout 1s; }'
             . ' location = /metrics { whatsapp_status; }');

sub metric { $nginx->metric($_[0], '/metrics') }

sub get { http_request($nginx->port, GET => '/api/conversations') }

ok(wait_until(sub { (metric('whatsapp_postgres_connected') // 0) == 2 }, 10),
   'two connections up');
is(get()->{status}, 200, 'baseline: 200');
my @workers = split ' ', `pgrep -P ${\ $nginx->pid}`;


# A session holding an exclusive lock on conversations: every API read
# waits behind it.  hold => seconds releases it by itself.
sub lock_conversations {
    my (%o) = @_;
    my $pid = open3(my $in, my $out, undef,
                    'psql', '-X', '-q', '-A', '-t', '-h', '127.0.0.1',
                    '-p', $pg->port, '-U', 'postgres', '-d', 'wa');
    $in->autoflush(1);
    print {$in} "SELECT pg_backend_pid();\nBEGIN;\n"
              . "LOCK TABLE conversations IN ACCESS EXCLUSIVE MODE;\n"
              . "SELECT 'locked';\n"
              . (defined $o{hold} ? "SELECT pg_sleep($o{hold});\nROLLBACK;\n"
                                  : '');
    chomp(my $backend = readline $out);
    my $line = readline $out;
    die "lock not taken" unless defined $line && $line eq "locked\n";
    return { pid => $pid, in => $in, out => $out, backend => $backend };
}

sub unlock {
    my ($l) = @_;
    $pg->query("SELECT pg_terminate_backend($l->{backend})")
        unless $l->{released};
    close $l->{in};
    waitpid $l->{pid}, 0;
}

my $get = http_raw(GET => '/api/conversations');


# --- beyond the pool: queued, then served ------------------------------------

{
    my $lock = lock_conversations(hold => 0.6);
    my $t0 = time;
    my $res = http_parallel($nginx->port, [ ($get) x 6 ], timeout => 10);
    my $elapsed = time - $t0;
    $lock->{released} = 1;
    unlock($lock);
    is_deeply([ map { $_->{status} } @$res ], [ (200) x 6 ],
              '2 running + 4 waiting in the queue: all 200');
    cmp_ok($elapsed, '>=', 0.5, '... once the lock was released');
    is(metric('whatsapp_postgres_errors_total{kind="queue_full"}'), 0,
       'nothing refused');
}


# --- slower than whatsapp_postgres_timeout: 504 ---------------------------------

{
    my $lock = lock_conversations();
    my $t0 = time;
    my $res = get();
    my $elapsed = time - $t0;
    is($res->{status}, 504, 'a query past the deadline: 504');
    like($res->{body}, qr/"code":"timeout"/, '504: JSON error code timeout');
    cmp_ok($elapsed, '>=', 0.9, '504 after whatsapp_postgres_timeout ...');
    cmp_ok($elapsed, '<', 2, '... not much later');
    like($nginx->error_log,
         qr/PostgreSQL \S+ connection \d did not answer in time running wa_api_conversations, reconnecting/,
         'the connection is closed and replaced');

    # the queue full: 2 running, 4 waiting, the rest refused at once
    ok(wait_until(sub { metric('whatsapp_postgres_connected') == 2 }, 10),
       'the timed-out connection replaced');
    $res = http_parallel($nginx->port, [ ($get) x 9 ], timeout => 10);
    my %st;
    $st{ $_->{status} }++ for @$res;
    is(($st{503} // 0) + ($st{504} // 0), 9, 'all 9 answered 503 or 504');
    cmp_ok($st{504} // 0, '>=', 2, 'the running ones: 504');
    is(metric('whatsapp_postgres_errors_total{kind="queue_full"}'), 3,
       'the 3 beyond pool + queue were refused as queue_full');
    my $refused = grep { $_->{status} == 503
                         && $_->{body} =~ /too many requests wait/ } @$res;
    is($refused, 3, 'refused: 503 "too many requests wait for the database"');
    like($nginx->error_log, qr/4 API queries already wait for a PostgreSQL/,
         'the full queue is logged');
    unlock($lock);

    ok(wait_until(sub { metric('whatsapp_postgres_connected') == 2 }, 10),
       'connections replaced');
    is(get()->{status}, 200, 'after the timeouts: 200');
}

# a refused answer is quick: measured alone, with the queue full
{
    ok(wait_until(sub { metric('whatsapp_postgres_connected') == 2 }, 10),
       'both connections up');
    my $lock = lock_conversations();
    my @held = map {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                      PeerPort => $nginx->port) or die $!;
        syswrite $s, $get;
        $s;
    } 1 .. 6;
    sleep 0.2;
    my $t0 = time;
    my $res = get();
    is($res->{status}, 503, 'queue full: 503');
    cmp_ok(time - $t0, '<', 0.3, 'queue full: answered at once');
    is($res->{headers}{'retry-after'}, '1', 'queue full: Retry-After');
    close $_ for @held;        # and these leave while queued or running
    sleep 0.2;
    unlock($lock);
    ok(wait_until(sub { get()->{status} == 200 }, 10),
       'after clients left queued and running queries: 200');
}


# --- clients leaving mid-query ---------------------------------------------

{
    my $lost = metric('whatsapp_postgres_errors_total{kind="lost"}');
    my $timeouts = metric('whatsapp_postgres_errors_total{kind="timeout"}');
    my $lock = lock_conversations(hold => 0.6);
    for my $i (1 .. 4) {        # 2 running, 2 waiting, then gone
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                      PeerPort => $nginx->port) or die $!;
        syswrite $s, $get;
        sleep 0.05;
        setsockopt($s, SOL_SOCKET, SO_LINGER, pack('ii', 1, 0)) if $i % 2;
        close $s;
    }
    $lock->{released} = 1;
    unlock($lock);
    is(get()->{status}, 200, 'after aborts mid-query: 200');
    is(metric('whatsapp_postgres_connected'), 2,
       'the abandoned queries finished on their connections');
    is(metric('whatsapp_postgres_errors_total{kind="lost"}'), $lost,
       'no connection was dropped for it');
    is(metric('whatsapp_postgres_errors_total{kind="timeout"}'), $timeouts,
       'and none timed out');
    like($nginx->error_log, qr/client prematurely closed connection/,
         'NGINX saw the clients leave while their queries ran');

    # aborts racing live answers
    for my $i (1 .. 200) {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                      PeerPort => $nginx->port) or die $!;
        syswrite $s, $get;
        setsockopt($s, SOL_SOCKET, SO_LINGER, pack('ii', 1, 0)) if $i % 2;
        close $s;
    }
    sleep 0.3;
    is(get()->{status}, 200, 'after 200 racing aborts: 200');
}


# --- PostgreSQL stopped, restarted --------------------------------------------

{
    $pg->stop;
    ok(wait_until(sub { metric('whatsapp_postgres_connected') == 0 }, 5),
       'PostgreSQL stopped: no connection up');
    for my $i (1 .. 3) {
        my $res = get();
        is($res->{status}, 503, "PostgreSQL stopped, request $i: 503");
        cmp_ok($res->{elapsed}, '<', 0.3, "request $i: answered at once");
        is($res->{headers}{'retry-after'}, '1', "request $i: Retry-After");
        like($res->{body}, qr/^\{"error":\{"code":"unavailable",/,
             "request $i: JSON error code unavailable");
    }

    $pg->_spawn;               # the same cluster and port, a new postmaster
    ok(wait_until(sub { get()->{status} == 200 }, 15),
       'PostgreSQL back: 200 without a reload');
    ok(wait_until(sub { metric('whatsapp_postgres_connected') == 2 }, 10),
       'both connections back');
    is_deeply([ split ' ', `pgrep -P ${\ $nginx->pid}` ], \@workers,
              'the same worker process');
    cmp_ok(metric('whatsapp_postgres_errors_total{kind="lost"}'), '>=', 2,
           'the lost connections are counted');

    # a restart with connections busy
    my $lock = lock_conversations(hold => 5);
    my @held = map {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                      PeerPort => $nginx->port) or die $!;
        syswrite $s, $get;
        $s;
    } 1 .. 3;
    sleep 0.2;
    # Immediate shutdown: a fast one terminates the lock holder first, and a
    # waiting query may then win the lock and answer 200 before its own
    # backend is told to go.
    $pg->restart('QUIT');
    my @st = map { my $b = ''; sysread($_, $b, 100); $b =~ m{^HTTP/1\.1 (\d+)}
                   ? $1 : 0 } @held;
    is_deeply(\@st, [ 503, 503, 503 ],
              'queries running or waiting when PostgreSQL went: 503');
    $lock->{released} = 1;
    unlock($lock);
    ok(wait_until(sub { get()->{status} == 200 }, 15),
       'after a restart under load: 200');
}


# --- reload: a query in flight is answered by the old worker -------------------

{
    my $lock = lock_conversations(hold => 0.8);
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => $nginx->port) or die $!;
    syswrite $s, $get;
    sleep 0.2;
    my @old = split ' ', `pgrep -P ${\ $nginx->pid}`;
    $nginx->reload;
    my $in = '';
    my $t0 = time;
    while (time - $t0 < 5) {
        my $n = sysread $s, $in, 65536, length $in;
        last unless $n;
    }
    like($in, qr{^HTTP/1\.1 200 }, 'reload: the query in flight answered');
    $lock->{released} = 1;
    unlock($lock);
    ok(wait_until(sub { my @w = split ' ', `pgrep -P ${\ $nginx->pid}`;
                        @w == 1 && $w[0] != $old[0] }, 15),
       'reload: the old worker exited');
    ok(wait_until(sub { metric('whatsapp_postgres_connected') == 2 }, 10),
       'reload: the old worker\'s connections closed, the new one\'s up');
    is(get()->{status}, 200, 'reload: 200');
}

$nginx->stop;
$nginx->check_logs('pool');


# --- NGINX started before PostgreSQL (and before the migrations) ------------

{
    my $port = free_port();
    my $late = WaTest::Nginx->start(
        workers => 1,
        http    => "whatsapp_postgres \"host=127.0.0.1 port=$port dbname=wa"
                 . " user=postgres\";",
        server  => 'location /api/ { whatsapp_api; whatsapp_auth off; }');
    my $res = http_request($late->port, GET => '/api/conversations/counts');
    is($res->{status}, 503, 'PostgreSQL never up: 503');
    cmp_ok($res->{elapsed}, '<', 0.3, 'PostgreSQL never up: at once');

    my $pg2 = WaTest::Postgres->start(port => $port);
    ok(wait_until(sub { $late->count_log(qr/connection \d ready/) >= 4 }, 15),
       'PostgreSQL came up: connected');
    $res = http_request($late->port, GET => '/api/conversations/counts');
    is($res->{status}, 500, 'the API functions missing: 500');
    like($late->error_log,
         qr/refused to prepare wa_api_conversation_counts: function wa_api_conversation_counts\(/,
         'the missing function is logged');

    my ($ok, $out) = WaTest::Worker->new(redis => $redis, pg => $pg2)->migrate;
    ok($ok, 'migrated later') or diag($out);
    $res = http_request($late->port, GET => '/api/conversations/counts');
    is($res->{status}, 200, 'migrated: 200 on the same connections');
    $late->stop;
    $late->check_logs('late PostgreSQL');
}

done_testing;
