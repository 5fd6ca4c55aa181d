# The whole ingest path: Meta's signed POST -> NGINX (module) -> Redis ->
# whatsapp-worker -> PostgreSQL, and the realtime event on wa:updates.
use strict;
use warnings;
use IO::Select;
use IO::Socket::INET;
use Test::More;
use WaTest;

my $pg = WaTest::Postgres->start;
my $redis = WaTest::Redis->start;
my $nginx = WaTest::Nginx->start(
    http   => "whatsapp_redis " . $redis->addr . ";",
    server => webhook_location());
my $w = WaTest::Worker->new(redis => $redis, pg => $pg);
my ($ok, $out) = $w->migrate;
ok($ok, 'migrate') or diag($out);
$w->start;

# a subscriber, as the SSE relay will be
my $sub = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                PeerPort => $redis->port) or die $!;
print {$sub} "*2\r\n\$9\r\nSUBSCRIBE\r\n\$10\r\nwa:updates\r\n";
my $ack = '';
sysread $sub, $ack, 1000 until $ack =~ /:1\r\n/;

my $body = fixture('escaped.json');
my $res = http_request($nginx->port, undef, undef, undef, undef,
                       raw => signed_post('/webhook', 's3cret', $body));
is($res->{status}, 200, 'Meta gets 200');
ok($w->drained(20), 'the worker took it');

sub utf8_bytes { my ($s) = @_; utf8::encode($s); return $s }

is($pg->query("SELECT body FROM messages"),
   utf8_bytes("See https://example.com/a/b?x=1&y=\"2\" \\ done\n"
              . "\tline two \x{e9}\x{e8}\n"),
   'the escaped text is stored decoded');
is($pg->query("SELECT profile_name FROM contacts"),
   utf8_bytes("Ren\x{e9}e O\x{2019}Brien \x{1f600}\n"),
   'the escaped profile name, surrogate pair and all');
is($pg->query("SELECT convert_from(body, 'UTF8') FROM webhook_log"),
   "$body\n", 'the webhook log keeps the bytes Meta sent');

my $msg = '';
my $deadline = time + 10;
while ($msg !~ /message\.new/ && time < $deadline) {
    my $n = sysread $sub, $msg, 65536, length $msg;
    last unless $n;
}
like($msg, qr/(\d+-\d+) \{"event":"message\.new","data":\{/,
     'published on wa:updates: "<stream id> {event, data}"');
my ($id) = $msg =~ /(\d+-\d+) \{"event":"message\.new"/;
my $entry = $redis->cmd('XRANGE', 'wa:updates', $id, $id);
is(scalar @$entry, 1, 'the pub/sub id is the wa:updates stream id');

# an API write (here: marking the conversation read) leaves its event in
# the outbox; the module's "wake" entry has the worker publish it at once,
# not at the next periodic sweep (claim_idle_ms / 2 = 30 s)
my $conv = $pg->query('SELECT id FROM conversations');
chomp $conv;
like($pg->query("SELECT status FROM wa_api_conversation_read(NULL, NULL, "
                . "false, '$conv')"), qr/^200/, 'conversation read via SQL');
$redis->cmd('XADD', 'wa:events', '*', 'wake', 'outbox');
my $sel = IO::Select->new($sub);
$msg = '';
$deadline = time + 5;
while ($msg !~ /conversation\.update.*"unread_count": ?0/
       && $sel->can_read($deadline - time)) {
    last unless sysread $sub, $msg, 65536, length $msg;
}
like($msg, qr/conversation\.update.*"unread_count": ?0/,
     'woken, the worker publishes the API\'s event within seconds');
ok($w->drained(5), 'the wake entry is acknowledged');
is($pg->query('SELECT count(*) FROM update_outbox'), "0\n",
   'and the outbox row deleted');

$w->stop;
$w->check_logs('end to end');
$nginx->stop;
$nginx->check_logs('end to end');
done_testing;
