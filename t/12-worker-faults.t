# whatsapp-worker under faults: kill -9 mid-batch, PostgreSQL away for
# 10 s, SIGTERM mid-load, started with PostgreSQL down, poison entries, a dead consumer's entries.
# Every event ends up stored exactly once; nothing blocks the queue.
use strict;
use warnings;
use JSON::PP;
use Test::More;
use Time::HiRes qw(sleep);
use WaTest;

my $pg = WaTest::Postgres->start;
my $redis = WaTest::Redis->start;
my $json = JSON::PP->new->canonical->ascii;
my $seq = 0;

sub delivery {
    my ($n) = @_;
    my $c = 4915112340000 + $n % 50;
    return $json->encode({ object => 'whatsapp_business_account', entry => [
        { id => '1022', changes => [ { field => 'messages', value => {
            messaging_product => 'whatsapp',
            metadata => { phone_number_id => '1065', display_phone_number => '1555' },
            contacts => [ { profile => { name => "C$c" }, wa_id => "$c" } ],
            messages => [ { from => "$c", id => "wamid.f.$n",
                            timestamp => 1749416000 + $n, type => 'text',
                            text => { body => "m $n" } } ] } } ] } ] });
}

sub enqueue {
    my ($count) = @_;
    $redis->cmd('XADD', 'wa:events', '*', 'body', delivery(++$seq),
                'rcvd', '1749416383000', 'rid', $seq) for 1 .. $count;
}

sub q1 { $pg->query($_[0]) =~ s/\n$//r }

my $dead_letters = 0;      # dead-lettered on purpose, never stored

sub exactly_once {
    my ($name) = @_;
    my $stored = $seq - $dead_letters;
    is(q1('SELECT count(*) FROM messages'), $stored,
       "$name: all $stored events stored");
    is(q1("SELECT count(*) FROM messages WHERE wamid !~ '^wamid\\.f\\.\\d+\$'"),
       0, "$name: nothing else");
    is(q1('SELECT sum(unread_count) FROM conversations'), $stored,
       "$name: unread counted exactly once each");
    is(q1("SELECT count(DISTINCT stream_id) FROM webhook_log "
          . "WHERE request_id <> 'p'"), $seq,
       "$name: each delivery logged once");
}

my $w = WaTest::Worker->new(redis => $redis, pg => $pg,
                            env => { WA_WORKER_BATCH => 50 });
my ($ok, $out) = $w->migrate;
ok($ok, 'migrate') or diag($out);

# --- kill -9 mid-batch, restart
enqueue(3000);
$w->start;
ok(wait_until(sub { q1('SELECT count(*) FROM messages') > 200 }, 20),
   'worker is draining');
$w->kill9;
my $before = q1('SELECT count(*) FROM messages');
cmp_ok($before, '<', 3000, "killed mid-load ($before stored)");
$w->start;
ok($w->drained(60), 'restarted worker drained the rest');
exactly_once('kill -9');
$w->stop;
$w->check_logs('kill -9');

# --- PostgreSQL stopped for 10 s under load
my $base = q1('SELECT count(*) FROM messages');
enqueue(2000);
$w->start;
ok(wait_until(sub { q1('SELECT count(*) FROM messages') > $base + 100 }, 20),
   'draining again');
$pg->stop;
enqueue(1000);
sleep 10;
like($w->log, qr/postgres|wa_apply_batch/i, 'the outage is logged');
$pg->restart;
ok($w->drained(90), 'backlog drained after PostgreSQL returned');
exactly_once('PostgreSQL outage');
like($w->log, qr/connected to Redis and PostgreSQL again/, 'recovery logged');

# --- SIGTERM mid-load: clean exit, nothing lost
enqueue(3000);
sleep 0.3;
is($w->stop('TERM'), 0, 'SIGTERM mid-load: exit status 0');
my $pending = $redis->cmd('XPENDING', 'wa:events', 'workers');
is($pending->[0], 0, 'SIGTERM: the batch in hand was acknowledged');
$w->start;
ok($w->drained(60), 'the rest drained after restart');
exactly_once('SIGTERM');
$w->stop;
$w->check_logs('SIGTERM');

# --- started while PostgreSQL is down: it waits, it does not exit
$pg->stop;
enqueue(100);
$w->start;
sleep 2;
ok(WaTest::Process::alive($w->pid), 'started with PostgreSQL down: waiting');
$pg->restart;
ok($w->drained(60), 'PostgreSQL up: the backlog drained');
exactly_once('started with PostgreSQL down');
unlike($w->log, qr/is not applied/, 'no migration reported missing');
$w->stop;

# --- poison entries: logged or dead-lettered; later events still flow
my @poison = ('{not json', '[1,2]', '{"object":"page","entry":[]}',
              '{"object":"whatsapp_business_account","entry":[{"id":"1",'
              . '"changes":[{"field":"messages","value":{"metadata":'
              . '{"phone_number_id":"1065"},"messages":[{"from":"1","id":'
              . '"wamid.huge","timestamp":9223372036854775807,'
              . '"type":"text"}]}}]}]}',
              '{"object":"whatsapp_business_account","entry":"x"}');
$redis->cmd('XADD', 'wa:events', '*', 'body', $_, 'rcvd', '1', 'rid', 'p')
    for @poison;
enqueue(20);
$w->start;
ok($w->drained(30), 'poison entries did not block the queue');
exactly_once('after poison');
is(q1("SELECT string_agg(result, ',' ORDER BY stream_id) FROM webhook_log "
      . "WHERE request_id = 'p'"), 'invalid,invalid,unknown,dead,ok',
   'poison: invalid, unknown, dead-lettered, or ok if harmless');
my $dead = $redis->cmd('XRANGE', 'wa:dead', '-', '+');
is(scalar @$dead, 1, 'one entry dead-lettered');
my %d = @{ $dead->[0][1] };
like($d{error}, qr/wa_apply_batch/, 'wa:dead says why');
like($d{body}, qr/wamid\.huge/, 'wa:dead keeps the body');

# --- PostgreSQL refuses even an entry's webhook log row (a broken schema,
# a bug): wa:dead still keeps it, and the queue does not spin on it
$pg->query('CREATE FUNCTION t_refuse() RETURNS trigger LANGUAGE plpgsql '
           . 'AS $$ BEGIN RAISE EXCEPTION \'refused by the test\'; END $$; '
           . 'CREATE TRIGGER t_refuse BEFORE INSERT ON webhook_log FOR EACH '
           . "ROW WHEN (NEW.request_id = 'refused') EXECUTE FUNCTION "
           . 't_refuse()');
$redis->cmd('XADD', 'wa:events', '*', 'body', $poison[2], 'rcvd', '1',
            'rid', 'refused');
enqueue(20);
ok($w->drained(30), 'an entry PostgreSQL will not even log: the queue moves');
exactly_once('after an entry refused');
$dead = $redis->cmd('XRANGE', 'wa:dead', '-', '+');
is(scalar @$dead, 2, '... it is in wa:dead');
like($w->log, qr/is not in the webhook log \(.*refused by the test.*\): in wa:dead only/,
     '... and the log says it is there only');
$pg->query('DROP TRIGGER t_refuse ON webhook_log');

# --- a dead consumer's entries are claimed
$w->stop;
enqueue(30);
my $stolen = $redis->cmd('XREADGROUP', 'GROUP', 'workers', 'crashed', 'COUNT',
                         10, 'STREAMS', 'wa:events', '>');
is(scalar @{ $stolen->[0][1] }, 10, 'another consumer took 10 and died');
my $w2 = WaTest::Worker->new(redis => $redis, pg => $pg,
                             env => { WA_WORKER_CLAIM_IDLE_MS => 400 });
$w2->start;
ok($w2->drained(30), 'its entries were claimed and stored');
like($w2->log, qr/claimed 10 entries/, 'the claim is logged');
exactly_once('claim');

# --- an entry delivered too often goes to wa:dead
$w2->stop;
enqueue(1);
my $r = $redis->cmd('XREADGROUP', 'GROUP', 'workers', 'w1', 'COUNT', 1,
                    'STREAMS', 'wa:events', '>');
my $id = $r->[0][1][0][0];
$redis->cmd('XCLAIM', 'wa:events', 'workers', 'w1', 0, $id, 'RETRYCOUNT', 9);
$w2 = WaTest::Worker->new(redis => $redis, pg => $pg);
$w2->start;
ok($w2->drained(30), 'the queue moved on');
like($w2->log, qr/entry \Q$id\E delivered \d+ times without success/,
     'the over-delivered entry was dead-lettered');
is(scalar @{ $redis->cmd('XRANGE', 'wa:dead', '-', '+') }, 3,
   'it is in wa:dead');
is(q1("SELECT result FROM webhook_log WHERE stream_id = '$id'"), 'dead',
   'and in the webhook log as dead');
$dead_letters++;

# --- Redis restarted empty (no persistence): the group is created again
$redis->restart;
enqueue(10);
ok($w2->drained(30), 'Redis lost its data: the worker recreated the group');
exactly_once('Redis restarted empty');

$w2->stop;
$w2->check_logs('faults');

done_testing;
