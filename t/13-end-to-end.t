# The whole ingest path: Meta's signed POST -> NGINX (module) -> Redis ->
# whatsapp-worker -> PostgreSQL, and the realtime event on wa:updates.
use strict;
use warnings;
use IO::Select;
use IO::Socket::INET;
use JSON::PP;
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

# the relay filters assigned-only agents on the data's "assignee", present
# (null) while the conversation is unassigned
my %first = @{ $entry->[0][1] };
my $data = decode_json($first{data});
ok(exists $data->{assignee} && !defined $data->{assignee},
   'message.new of an unassigned conversation: "assignee": null');
like($first{data}, qr/^\{"phone_number_id"\s*:\s*"106540352242922",\s*
                      "conversation_id"\s*:\s*"[-0-9a-f]{36}",\s*
                      "assignee"\s*:\s*null,\s*"message"\s*:/x,
     'assignee at the top level, right after conversation_id');

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
while ($msg !~ /conversation\.update.*"unread_count"\s*:\s*0/
       && $sel->can_read($deadline - time)) {
    last unless sysread $sub, $msg, 65536, length $msg;
}
like($msg, qr/conversation\.update.*"unread_count"\s*:\s*0/,
     'woken, the worker publishes the API\'s event within seconds');
ok($w->drained(5), 'the wake entry is acknowledged');
is($pg->query('SELECT count(*) FROM update_outbox'), "0\n",
   'and the outbox row deleted');

# --- once the conversation is assigned, its message events name the agent
$pg->query("UPDATE conversations SET assignee = 'agent-x'");
my $last = $redis->cmd('XREVRANGE', 'wa:updates', '+', '-',
                       'COUNT', 1)->[0][0];

sub change {
    my ($field, %v) = @_;
    return { field => $field, value => {
        messaging_product => 'whatsapp',
        metadata => { display_phone_number => '15550783881',
                      phone_number_id => '106540352242922' }, %v } };
}

sub deliver {
    my ($name, @changes) = @_;
    my $res = http_request($nginx->port, undef, undef, undef, undef,
        raw => signed_post('/webhook', 's3cret', encode_json({
            object => 'whatsapp_business_account',
            entry => [ { id => '102290129340398',
                         changes => \@changes } ] })));
    is($res->{status}, 200, "$name: Meta gets 200");
    ok($w->drained(20), "$name: the worker took it");
}

# an answer sent from the phone (echo) and the customer's next message;
# the answer's status in a later delivery, so that it moves a stored message
deliver('echo and message', change('smb_message_echoes', message_echoes => [ {
            from => '15550783881', to => '16505551234', id => 'wamid.e2e.out',
            timestamp => '1749416400', type => 'text',
            text => { body => 'an answer' } } ]),
        change('messages', messages => [ {
            from => '16505551234', id => 'wamid.e2e.in2',
            timestamp => '1749416410', type => 'text',
            text => { body => 'thanks' } } ]));
deliver('status', change('messages', statuses => [ {
    id => 'wamid.e2e.out', status => 'delivered', timestamp => '1749416420',
    recipient_id => '16505551234' } ]));

my @assignee;
for my $u (@{ $redis->cmd('XRANGE', 'wa:updates', "($last", '+') }) {
    my %f = @{ $u->[1] };
    next unless $f{event} =~ /^message\./;
    my $d = decode_json($f{data});
    push @assignee, "$f{event} " . ($d->{assignee} // 'null');
    like($f{data}, qr/"conversation_id" ?: ?"[-0-9a-f]{36}", ?"assignee" ?:/,
         "$f{event}: assignee right after conversation_id");
}
is_deeply([ sort @assignee ], [ 'message.echo agent-x', 'message.new agent-x',
                                'message.status agent-x' ],
          'message.echo, message.new and message.status name the assignee');

$w->stop;
$w->check_logs('end to end');
$nginx->stop;
$nginx->check_logs('end to end');
done_testing;
