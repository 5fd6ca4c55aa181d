# Redis down, frozen, restarted or saturated: fast 503 with Retry-After
# (Meta retries), then 200 again with no reload.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use WaTest;

my $text = fixture('text.json');
my $post = signed_post('/webhook', 's3cret', $text);

my $redis = WaTest::Redis->start;
my $nginx = WaTest::Nginx->start(
    http   => "whatsapp_redis " . $redis->addr . " connect_timeout=300ms;",
    server => webhook_location(extra => 'whatsapp_redis_timeout 400ms;')
            . ' location = /status { whatsapp_status; }');

sub deliver { http_request($nginx->port, undef, undef, undef, undef,
                           raw => $post) }

sub metric { $nginx->metric($_[0]) }

is(deliver()->{status}, 200, 'Redis up: 200');
is(metric('whatsapp_redis_connected'), 2, 'both workers connected');
my @workers = sort split ' ', `pgrep -P ${\ $nginx->pid}`;

# --- Redis stopped
$redis->stop;
ok(wait_until(sub { metric('whatsapp_redis_connected') == 0 }, 5),
   'both workers noticed the connection loss');
for my $i (1 .. 4) {
    my $res = deliver();
    is($res->{status}, 503, "Redis stopped, delivery $i: 503");
    is($res->{headers}{'retry-after'}, '1', "delivery $i: Retry-After");
    cmp_ok($res->{elapsed}, '<', 0.4, "delivery $i: answered at once");
}

# --- Redis back on the same port, no reload
$redis->restart;
ok(wait_until(sub { deliver()->{status} == 200 }, 15),
   'Redis restarted: 200 again without a reload');
ok(wait_until(sub { metric('whatsapp_redis_connected') == 2 }, 15),
   'both workers reconnected');
is_deeply([ sort split ' ', `pgrep -P ${\ $nginx->pid}` ], \@workers,
          'same worker processes (no reload happened)');
ok(scalar(grep { $_->{body} eq $text } @{ $redis->events }) >= 1,
   'the new delivery is in the restarted Redis');

# --- Redis full (maxmemory reached, noeviction): refused, not lost
$redis->cmd('CONFIG', 'SET', 'maxmemory-policy', 'noeviction');
$redis->cmd('CONFIG', 'SET', 'maxmemory', '1');
my $full = deliver();
is($full->{status}, 503, 'Redis out of memory: 503');
is($full->{headers}{'retry-after'}, '1', 'Redis out of memory: Retry-After');
like($nginx->error_log, qr/Redis refused XADD: OOM/, 'the refusal is logged');
$redis->cmd('CONFIG', 'SET', 'maxmemory', '0');
is(deliver()->{status}, 200, 'memory freed: 200 on the same connection');

# --- Redis frozen: no answer within whatsapp_redis_timeout
$redis->freeze;
my $res = deliver();
is($res->{status}, 503, 'Redis frozen: 503');
cmp_ok($res->{elapsed}, '>=', 0.35, 'after the timeout ...');
cmp_ok($res->{elapsed}, '<', 1.5, '... not much later');
is($res->{headers}{'retry-after'}, '1', 'with Retry-After');

# the stalled connection was dropped: no more waiting on it
my @fast = map { deliver() } 1 .. 3;
is_deeply([ map { $_->{status} } @fast ], [ 503, 503, 503 ],
          'frozen: further deliveries 503');
cmp_ok((sort { $b <=> $a } map { $_->{elapsed} } @fast)[0], '<', 1.5,
       'frozen: none waits longer than a timeout');

$redis->thaw;
ok(wait_until(sub { deliver()->{status} == 200 }, 15),
   'Redis thawed: 200 again');

like(http_request($nginx->port, GET => '/status')->{body},
     qr/whatsapp_webhook_requests_total\{outcome="redis_timeout"\} [1-9]/,
     'timeouts are counted');
like(http_request($nginx->port, GET => '/status')->{body},
     qr/whatsapp_redis_errors_total\{kind="lost"\} [1-9]/,
     'lost connections are counted');
like(http_request($nginx->port, GET => '/status')->{body},
     qr/whatsapp_redis_errors_total\{kind="reply"\} [1-9]/,
     'error replies are counted');
like($nginx->error_log, qr/Redis \S+ did not answer a command in time/,
     'the stall is logged');

$nginx->stop;
$nginx->check_logs('outage');

# --- NGINX started while Redis is down
my $port = free_port();
my $late = WaTest::Nginx->start(
    no_wait => 1, workers => 1,
    http    => "whatsapp_redis 127.0.0.1:$port;",
    server  => webhook_location());
$res = http_request($late->port, undef, undef, undef, undef, raw => $post);
is($res->{status}, 503, 'Redis never up: 503');
my $r2 = WaTest::Redis->start(port => $port);
ok(wait_until(sub { http_request($late->port, undef, undef, undef, undef,
                                 raw => $post)->{status} == 200 }, 15),
   'Redis came up later: 200');
is($r2->cmd('XLEN', 'wa:events'), 1, 'exactly the acknowledged delivery');
$late->stop;
$late->check_logs('late redis');

# --- too many commands in flight: 503 at once, not a queue
my $r3 = WaTest::Redis->start;
my $small = WaTest::Nginx->start(
    workers => 1,
    http    => "whatsapp_redis " . $r3->addr . " max_pending=4;",
    server  => webhook_location(extra => 'whatsapp_redis_timeout 1s;')
             . ' location = /status { whatsapp_status; }');
$r3->freeze;
my $t0 = time;
my $burst = http_parallel($small->port, [ ($post) x 12 ], timeout => 10);
my %st;
$st{ $_->{status} }++ for @$burst;
is_deeply(\%st, { 503 => 12 }, 'saturated and frozen: all 503');
my $status = http_request($small->port, GET => '/status')->{body};
like($status, qr/outcome="redis_overloaded"\} 8$/m,
     'the 8 beyond max_pending were refused as overloaded');
like($small->error_log, qr/4 Redis commands already in flight/,
     'overload is logged');
$r3->thaw;
ok(wait_until(sub { http_request($small->port, undef, undef, undef, undef,
                                 raw => $post)->{status} == 200 }, 15),
   'after the stall: 200 again');
$small->stop;
$small->check_logs('max_pending');

done_testing;
