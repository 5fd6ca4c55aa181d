# Sending when things go wrong: retries only where Meta surely did not act
# (throttling, 5xx), with growing delays, and a limit; a refused token
# pauses only its number until a new one is stored; an answer lost after
# the request left is never resent (and Meta's webhooks resolve it); kill -9
# of the worker mid-sends: nothing lost, nothing sent twice.
use strict;
use warnings;
use Test::More;
use WaTest;
use WaTest::Send;

my $PN = $WaTest::Send::PN;
my $PN2 = $WaTest::Send::PN2;

# a backoff base of 200 ms keeps each jittered delay's floor above the
# previous one's ceiling by more than a loaded machine's scheduling noise
my $t = WaTest::Send->start(env => { WA_SENDER_MAX_ATTEMPTS => 4,
                                     WA_SENDER_RETRY_BASE_MS => 200,
                                     WA_SENDER_TIMEOUT_MS => 1500,
                                     WA_WORKER_CLAIM_IDLE_MS => 3000 });
my $pg = $t->pg;
my $sim = $t->sim;

sub template { WaTest::Send::template(@_) }

sub gaps {
    my @t = sort { $a <=> $b } map { $_->{t_ms} } @{ $t->received($_[0]) };
    return map { $t[$_] - $t[$_ - 1] } 1 .. $#t;
}

# --- retried: throttling, then 5xx -------------------------------------------

$sim->add_rule({ match => { to => '+4940000001' }, times => 2,
                 error => { code => 130429 } });
my $id = $t->send(template('+4940000001'))->{doc}{id};
ok($t->wait_status($id, 'read', 20), '130429 twice, then sent');
my @g = gaps($id);
is(scalar @g, 2, '... three requests in all');
cmp_ok($g[1], '>', $g[0], "... with a growing delay (@g ms)");

$sim->add_rule({ match => { to => '+4940000002' }, times => 3,
                 http_status => 503 });
$id = $t->send(template('+4940000002'))->{doc}{id};
ok($t->wait_status($id, 'read', 20), 'a 503 three times, then sent');
@g = gaps($id);
is(scalar @g, 3, '... four requests in all');
# base * 2^(attempt - 1), jittered to 50-100 %: each delay is at least
# 100, 200, 400 ms; neighbours may meet (jitter, a loaded machine), but
# the third outlasts the first's ceiling by 200 ms
ok($g[0] >= 95 && $g[1] >= 195 && $g[2] >= 395,
   "... each delay at least its backoff floor (@g ms)");
cmp_ok($g[2], '>', $g[0], '... and the delays grow');

$sim->add_rule({ match => { to => '+4940000003' }, error => { code => 131000 } });
$id = $t->send(template('+4940000003'))->{doc}{id};
ok($t->wait_status($id, 'failed', 20), 'a transient error that lasts: failed');
is(scalar @{ $t->received($id) }, 4, '... after max_attempts (4) requests');
like(($t->row($id, 'error_title'))[0], qr/given up after 4 attempts/,
     '... and says so');
$sim->clear_rules;

# --- a refused token pauses its number, only its number ---------------------

$sim->add_rule({ match => { token => 'tok-two' }, error => { code => 190 } });
my $p2 = $t->send(template('+4940000010', phone_number_id => $PN2))->{doc}{id};
ok(wait_until(sub { $pg->query("SELECT send_paused_at IS NOT NULL FROM "
                               . "phone_numbers WHERE phone_number_id = "
                               . "'$PN2'") eq "t\n" }, 10),
   'Meta refuses the token (190): the number is paused');
like($t->worker->log, qr/refused the access token of $PN2/,
     '... said in the log');
my $p1 = $t->send(template('+4940000011'))->{doc}{id};
ok($t->wait_status($p1, 'read', 10), 'the other number still sends');
my $p2b = $t->send(template('+4940000012', phone_number_id => $PN2))->{doc}{id};
sleep 1;
is(($t->row($p2, 'status'))[0], 'queued', 'the paused number waits: queued');
is(($t->row($p2b, 'status'))[0], 'queued', '... its new messages too');
is(scalar @{ $t->received($p2b) }, 0, '... not sent meanwhile');
ok(grep({ $_->[0] eq 'phone.health' && $_->[1]{phone_number_id} eq $PN2 }
        @{ $t->updates }), '... announced as phone.health');

$sim->clear_rules;
$t->token($PN2, 'tok-three');
ok($t->wait_status($p2, 'read', 15) && $t->wait_status($p2b, 'read', 15),
   'a new token stored: both sent');
is($t->received($p2b)->[0]{authorization}, 'Bearer tok-three',
   '... with the new token');

# the token at rest is sealed: neither its text nor its bytes in PostgreSQL
my $sealed = $pg->query("SELECT encode(sealed, 'escape') FROM "
                        . "phone_number_tokens");
unlike($sealed, qr/tok-(one|two|three)/, 'tokens are sealed at rest');
unlike($t->worker->log, qr/tok-(one|two|three)/, '... and never logged');

# --- the answer lost after the request left: not resent ---------------------

$sim->add_rule({ match => { to => '+4940000020' }, drop => 'close' });
$id = $t->send(template('+4940000020'))->{doc}{id};
ok($t->wait_status($id, 'unknown', 10), 'no answer to a sent request: unknown');
like(($t->row($id, 'error_title'))[0], qr/not sent again/, '... and why');
my $n = scalar @{ $t->received($id) };
sleep 1.5;
is(scalar @{ $t->received($id) }, $n, '... and the sender did not send it again');
# (libcurl itself sends a request again on a fresh connection when a
# reused keep-alive one closes before any answer, a few times: it cannot
# tell that from a connection the server had closed as idle)
cmp_ok($n, '<=', 6, "... libcurl's own retries are bounded ($n)");
$sim->clear_rules;

$sim->add_rule({ match => { to => '+4940000021' }, times => 1,
                 delay_ms => 2500 });
$id = $t->send(template('+4940000021'))->{doc}{id};
# (unknown only until Meta's webhooks arrive: its event shows it passed)
ok(wait_until(sub {
       grep { $_->[0] eq 'message.status'
              && ($_->[1]{message}{id} // '') eq $id
              && $_->[1]{message}{status} eq 'unknown' } @{ $t->updates }
   }, 10),
   'Meta too slow (timeout after the request left): unknown');
ok($t->wait_status($id, 'read', 15),
   "Meta had accepted it: its status webhooks carry our id back, it moves on");
is(scalar @{ $t->received($id) }, 1, '... sent once');
like(($t->row($id, 'wamid'))[0], qr/^wamid\./, '... with its wamid');

# --- kill -9 mid-sends --------------------------------------------------------

$sim->clear_requests;
$sim->add_rule({ delay_ms => 200 });
my $answers = $t->send_many(map { { priority => 'bulk',
                                    %{ template(sprintf '+4941%07d', $_) } } }
                              1 .. 300);
is(scalar(grep { $_->{status} == 202 } @$answers), 300, '300 sends queued');
ok(wait_until(sub { @{ $sim->requests } >= 60 }, 20), 'sending under way');
$t->worker->kill9;
$sim->clear_rules;
$t->worker->start;

ok(wait_until(sub {
       $pg->query("SELECT count(*) FROM messages WHERE direction = 'out' AND "
                  . "content->>'to' LIKE '+4941%' AND status IN "
                  . "('queued', 'sending')") eq "0\n" }, 60),
   'after the restart, nothing left queued or sending')
    or diag($pg->query("SELECT status, count(*) FROM messages GROUP BY 1"));

my %by_id;
push @{ $by_id{$_->{body}{biz_opaque_callback_data}} }, $_
    for grep { ($_->{body}{to} // '') =~ /^\+4941/ } @{ $sim->requests };
my @twice = grep { @{ $by_id{$_} } > 1 } keys %by_id;
is(scalar @twice, 0, 'no message sent twice');

# a request cut off by the kill before it had wholly left never reached
# Meta: its message is `unknown` (it may have; it is not sent again)
my @unknown = split /\n/, $pg->query(
    "SELECT id FROM messages WHERE content->>'to' LIKE '+4941%' "
    . "AND status = 'unknown'");
my @unsent = grep { !$by_id{$_} } @unknown;
is(scalar(keys %by_id) + @unsent, 300,
   'every message reached Meta, or is unknown ('
   . scalar(@unsent) . ' unknown, never received)');
cmp_ok(scalar @unsent, '<=', 100, '... those at most the requests in flight');

# every one Meta received is linked to its wamid, an unknown one too (its
# webhooks named it)
my $received = join ',', map { "'$_'" } keys %by_id;
ok(wait_until(sub {
       $pg->query("SELECT count(*) FROM messages WHERE id IN ($received) "
                  . "AND wamid LIKE 'wamid.%'") eq scalar(keys %by_id) . "\n"
   }, 30),
   'all that Meta received have their wamid')
    or diag($pg->query("SELECT status, count(*) FROM messages WHERE "
                       . "content->>'to' LIKE '+4941%' GROUP BY 1"));

# --- PostgreSQL stopped with a recording in flight -----------------------------
# A round's outcomes are recorded on a connection of their own, without
# waiting.  Here a session locks the rows of the messages in flight, so
# the recording of Meta's answers waits in PostgreSQL, and PostgreSQL
# stops under it: that recording is made again once PostgreSQL is back,
# before any later one, and nothing is sent twice.

# Meta's answers held back until the session holds the rows
$sim->clear_requests;
$sim->add_rule({ delay_ms => 1500 });
$answers = $t->send_many(map { { priority => 'bulk',
                                 %{ template(sprintf '+4942%07d', $_) } } }
                           1 .. 100);
is(scalar(grep { $_->{status} == 202 } @$answers), 100, '100 sends queued');
my $in_flight = "SELECT id FROM messages WHERE status = 'sending' "
                . "AND content->>'to' LIKE '+4942%'";
ok(wait_until(sub { $pg->query("SELECT count(*) FROM ($in_flight) f") >= 20 },
              20), 'sending under way');

my $holder = fork // die "fork: $!";
if (!$holder) {
    open STDOUT, '>', '/dev/null';
    open STDERR, '>', '/dev/null';
    exec 'psql', '-X', '-q', '-h', '127.0.0.1', '-p', $pg->port,
         '-U', 'postgres', '-d', 'wa', '-c',
         "BEGIN; $in_flight FOR UPDATE; SELECT pg_sleep(60)";
    exit 127;
}
# locked once it sleeps (its FOR UPDATE may wait for a claim to commit)
ok(wait_until(sub { $pg->query("SELECT count(*) FROM pg_stat_activity "
                               . "WHERE wait_event = 'PgSleep'")
                    eq "1\n" }, 10), 'the rows in flight locked');
ok(wait_until(sub { $pg->query("SELECT count(*) FROM pg_stat_activity "
                               . "WHERE query LIKE '%wa_send_results%' "
                               . "AND wait_event_type = 'Lock'")
                    eq "1\n" }, 20),
   'Meta answered, the recording waits in PostgreSQL');
$sim->clear_rules;
# the recording's backend ended first, while it still waits: in a
# shutdown alone, the holder's locks may go before the recording's
# backend is told to end, and the recording would commit
is($pg->query("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
              . "WHERE query LIKE '%wa_send_results%' "
              . "AND wait_event_type = 'Lock'"), "1\n",
   'the recording cut off in PostgreSQL');
$pg->stop;
waitpid $holder, 0;
$pg->restart;

# recorded from Meta's answers, not resolved later as `unknown` (whose
# title would stay)
my $left = "SELECT count(*) FROM messages WHERE content->>'to' LIKE '+4942%' "
           . "AND (wamid NOT LIKE 'wamid.%' OR error_title IS NOT NULL)";
ok(wait_until(sub { $pg->query($left) eq "0\n" }, 60),
   'after the outage, every message accepted and recorded')
    or diag($pg->query("SELECT status, error_title, count(*) FROM messages "
                       . "WHERE content->>'to' LIKE '+4942%' GROUP BY 1, 2"));
my %sent;
$sent{$_->{body}{biz_opaque_callback_data}}++
    for grep { ($_->{body}{to} // '') =~ /^\+4942/ } @{ $sim->requests };
is(scalar(keys %sent), 100, '... each reached Meta');
is(scalar(grep { $_ > 1 } values %sent), 0, '... once');
like($t->worker->log, qr/outcomes not recorded yet/,
     'the recording cut off is logged');

# --- the API's message.new goes out before its send's events ----------------
# The API writes message.new to update_outbox and wakes the ingest loop,
# which publishes it; the sender's answer could overtake it.  Here the
# ingest loop is never woken (this worker reads other keys, and claims
# nothing for ten minutes): the sender publishes the API's row itself,
# ahead of the events of the send.

my $w = $t->worker;
$w->stop;
$w->{env}{WA_REDIS_PREFIX} = 'x:';
$w->{env}{WA_WORKER_CLAIM_IDLE_MS} = 600000;
$w->{env}{WA_SENDER_SWEEP_MS} = 300;
$w->start;
sleep 1;                    # past its start, where it publishes what is left
$id = $t->send(template('+4940000090'))->{doc}{id};
my $events_of = sub {
    my $entries = $t->redis->cmd('XRANGE', 'x:updates', '-', '+');
    return [ map { my %f = @{ $_->[1] }; $f{event} }
             grep { my %f = @{ $_->[1] }; ($f{data} // '') =~ /\Q$id\E/ }
             @$entries ];
};
ok(wait_until(sub { grep { $_ eq 'message.status' } @{ $events_of->() } },
              10), 'the message is sent (its sweep found it)')
    or diag($w->log);
is($events_of->()[0], 'message.new',
   '... and its message.new was published first, by the sender')
    or diag(explain $events_of->());

$t->stop;
done_testing;
