# Clients going away mid-body and mid-XADD crash nothing, leak nothing
# (see the ASan run) and leave the module serving.
use strict;
use warnings;
use IO::Socket::INET;
use Socket qw(SOL_SOCKET SO_LINGER);
use Test::More;
use Time::HiRes qw(sleep);
use WaTest;

my $text = fixture('text.json');
my $post = signed_post('/webhook', 's3cret', $text);

my $redis = WaTest::Redis->start;
my $nginx = WaTest::Nginx->start(
    http   => "whatsapp_redis " . $redis->addr . ";",
    server => webhook_location(extra => 'whatsapp_redis_timeout 500ms;'
                                      . ' client_max_body_size 3m;'));
my @workers = sort split ' ', `pgrep -P ${\ $nginx->pid}`;

# send $bytes of $raw, then close (with an RST when $reset)
sub abort_after {
    my ($raw, $bytes, $reset) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => $nginx->port) or die $!;
    syswrite $s, $raw, $bytes;
    setsockopt($s, SOL_SOCKET, SO_LINGER, pack('ii', 1, 0)) if $reset;
    close $s;
}

sub deliver { http_request($nginx->port, undef, undef, undef, undef,
                           raw => $post)->{status} }

# --- mid-body: headers promise 200 KB, a part arrives, the client leaves
my $big = '{"x":"' . ('a' x 200_000) . '"}';
my $big_post = signed_post('/webhook', 's3cret', $big);
for my $i (1 .. 40) {
    abort_after($big_post, 300 + 997 * $i, $i % 2);
}
sleep 0.3;
is($redis->cmd('XLEN', 'wa:events'), 0, 'no partial body was enqueued');
is(deliver(), 200, 'serving after mid-body aborts');

# --- mid-XADD: the full request is sent, the client leaves before Redis
# answers (Redis frozen so the answer surely comes after)
$redis->freeze;
abort_after($post, length $post, $_ % 2) for 1 .. 20;
sleep 0.8;                   # past whatsapp_redis_timeout
$redis->thaw;
ok(wait_until(sub { deliver() == 200 }, 15),
   'serving after clients left mid-XADD');

# --- mid-XADD racing a live Redis: answers land on closed connections
abort_after($post, length $post, $_ % 2) for 1 .. 300;
sleep 0.3;
is(deliver(), 200, 'serving after 300 racing aborts');

is_deeply([ sort split ' ', `pgrep -P ${\ $nginx->pid}` ], \@workers,
          'no worker process crashed');

$nginx->stop;
$nginx->check_logs('abort');

# --- fast shutdown (SIGTERM) while commands are in flight
my $fast = WaTest::Nginx->start(
    http   => "whatsapp_redis " . $redis->addr . ";",
    server => webhook_location(extra => 'whatsapp_redis_timeout 5s;'));
$redis->freeze;
my @held = map {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => $fast->port) or die $!;
    syswrite $s, $post;
    $s;
} 1 .. 10;
sleep 0.3;
WaTest::Process::stop(delete $fast->{pid}, 'TERM', 10);
$redis->thaw;
my $answered = grep { my $buf = ''; sysread($_, $buf, 100); $buf =~ /^HTTP/ }
               @held;
is($answered, 0, 'terminating: requests in flight get no false 200');
$fast->check_logs('terminate with commands in flight');

done_testing;
