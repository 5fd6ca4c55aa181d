# wa_apply_batch in two transactions at once, the way two workers call it,
# made to interleave on purpose: the first one stays open while the second
# one runs, then commits.  What the second one could not see must not be
# lost, and batches that share nothing must not wait for each other.
use strict;
use warnings;
use IO::Select;
use IPC::Open3;
use JSON::PP;
use Test::More;
use Time::HiRes qw(time);
use WaTest;

my $pg = WaTest::Postgres->start;
my $redis = WaTest::Redis->start;   # named by the worker's config only
my ($ok, $out) = WaTest::Worker->new(redis => $redis, pg => $pg)->migrate;
ok($ok, 'migrate') or BAIL_OUT($out);

my $json = JSON::PP->new->canonical;
my $pn = '106540352242922';
my $customer = '4915112345601';
my $t0 = 1749416000;


# --- a psql session kept open across statements ------------------------------

sub session {
    my $pid = open3(my $in, my $out, undef,
                    'psql', '-X', '-q', '-A', '-t', '-h', '127.0.0.1',
                    '-p', $pg->port, '-U', 'postgres', '-d', 'wa');
    $in->autoflush(1);
    return { pid => $pid, in => $in, out => $out };
}

# Sends statements; the session prints "done" once they have run.
sub run_sql {
    my ($s, $sql) = @_;
    print { $s->{in} } "$sql;\nSELECT 'done';\n";
}

# Whether the session printed "done" within $timeout seconds (sysread:
# select knows nothing of what a buffered readline kept back).
sub finished {
    my ($s, $timeout) = @_;
    my $sel = IO::Select->new($s->{out});
    my $deadline = time + $timeout;
    $s->{buf} //= '';
    for (;;) {
        while ($s->{buf} =~ s/^(.*)\n//) {
            push @{ $s->{seen} }, $1;
            return 1 if $1 eq 'done';
            diag("psql: $1") if $1 =~ /ERROR/;
        }
        my $left = $deadline - time;
        return 0 unless $left > 0 && $sel->can_read($left);
        sysread($s->{out}, $s->{buf}, 4096, length $s->{buf}) or return 0;
    }
}

sub close_session {
    my ($s) = @_;
    close $s->{in};
    waitpid $s->{pid}, 0;
}

sub apply {
    my (%batch) = @_;
    my $b = $json->encode(\%batch) =~ s/'/''/gr;
    return "SELECT outbox_id FROM wa_apply_batch('$b'::jsonb, '{}', 'test', "
         . "'{}')";
}

sub echo_msg {
    my ($wamid, $ts) = @_;
    return { wamid => $wamid, pn => $pn, customer => $customer, dir => 'out',
             source => 'echo', ts => $ts,
             msg => { from => '15550783881', to => $customer, id => $wamid,
                      timestamp => "$ts", type => 'text',
                      text => { body => 'answer' } } };
}

sub inbound_msg {
    my ($wamid, $ts, %extra) = @_;
    my $type = $extra{edit} ? 'edit' : 'text';
    my $from = $extra{customer} // $customer;
    return { wamid => $wamid, pn => $pn, customer => $from, dir => 'in',
             source => 'webhook', ts => $ts,
             msg => { from => $from, id => $wamid, timestamp => "$ts",
                      type => $type,
                      $extra{edit}
                          ? (edit => { original_message_id => $extra{edit},
                                       message => { type => 'text', text =>
                                           { body => $extra{body} } } })
                          : (text => { body => $extra{body} // 'hi' }) } };
}

sub status {
    my ($wamid, $status, $ts) = @_;
    return { wamid => $wamid, pn => $pn, status => $status, ts => $ts,
             raw => { id => $wamid, status => $status, timestamp => "$ts",
                      recipient_id => $customer } };
}

sub q1 { $pg->query($_[0]) =~ s/\n$//r }

# First holds its batch open; second runs meanwhile and must wait (or not,
# as $waits says); then first commits and second finishes.
sub interleave {
    my ($name, $first, $second, $waits) = @_;
    my ($a, $b) = (session(), session());
    run_sql($a, "BEGIN;\n$first");
    ok(finished($a, 10), "$name: the first batch applied, not committed")
        or diag($pg->query("SELECT wait_event_type, wait_event, state, query "
                           . "FROM pg_stat_activity WHERE datname = 'wa'"));
    run_sql($b, $second);
    if ($waits) {
        ok(!finished($b, 0.5), "$name: the second waits for the first");
        run_sql($a, 'COMMIT');
        ok(finished($a, 10), "$name: the first committed");
        ok(finished($b, 10), "$name: then the second finished");
    } else {
        ok(finished($b, 5), "$name: the second did not wait");
        run_sql($a, 'COMMIT');
        ok(finished($a, 10), "$name: the first committed");
    }
    close_session($_) for $a, $b;
}


# --- two statuses of one message, each batch blind to the other's ------------

$pg->query(apply(messages => [ echo_msg('wamid.x', $t0) ],
                 statuses => [ status('wamid.x', 'sent', $t0 + 1) ]));
interleave('delivered and read at once',
           apply(statuses => [ status('wamid.x', 'delivered', $t0 + 2) ]),
           apply(statuses => [ status('wamid.x', 'read', $t0 + 3) ]), 1);
is(q1("SELECT status || ' ' || (sent_status_at IS NOT NULL)::text || ' ' "
      . "|| (delivered_at IS NOT NULL)::text || ' ' "
      . "|| (read_at IS NOT NULL)::text FROM messages WHERE wamid = 'wamid.x'"),
   'read true true true', 'read, and no transition time lost');

# the same, the other way round: the later status committed first
$pg->query(apply(messages => [ echo_msg('wamid.y', $t0) ]));
interleave('read first, then delivered',
           apply(statuses => [ status('wamid.y', 'read', $t0 + 3) ]),
           apply(statuses => [ status('wamid.y', 'delivered', $t0 + 2) ]), 1);
is(q1("SELECT status || ' ' || (delivered_at IS NOT NULL)::text || ' ' "
      . "|| (read_at IS NOT NULL)::text FROM messages WHERE wamid = 'wamid.y'"),
   'read true true', 'status never went back; delivered time kept');


# --- a status whose message is being stored by the other batch ---------------

interleave('message, then its status',
           apply(messages => [ echo_msg('wamid.z', $t0) ]),
           apply(statuses => [ status('wamid.z', 'delivered', $t0 + 2) ]), 1);
is(q1("SELECT status FROM messages WHERE wamid = 'wamid.z'"), 'delivered',
   'the status reached the message stored meanwhile');

interleave('status, then its message',
           apply(statuses => [ status('wamid.w', 'sent', $t0 + 1) ]),
           apply(messages => [ echo_msg('wamid.w', $t0) ]), 1);
is(q1("SELECT status FROM messages WHERE wamid = 'wamid.w'"), 'sent',
   'the message found the status stored meanwhile');


# --- an edit and its original --------------------------------------------

interleave('original, then its edit',
           apply(messages => [ inbound_msg('wamid.o', $t0, body => 'typo') ]),
           apply(messages => [ inbound_msg('wamid.e', $t0 + 60,
                                           edit => 'wamid.o',
                                           body => 'fixed') ]), 1);
is(q1("SELECT body || ' ' || (edited_at IS NOT NULL)::text FROM messages "
      . "WHERE wamid = 'wamid.o'"), 'fixed true', 'the edit applied');


# --- nothing shared: no waiting ------------------------------------------------

$pg->query(apply(messages => [ echo_msg('wamid.p', $t0),
                               echo_msg('wamid.q', $t0) ]));
interleave('statuses of two different messages',
           apply(statuses => [ status('wamid.p', 'delivered', $t0 + 2) ]),
           apply(statuses => [ status('wamid.q', 'delivered', $t0 + 2) ]), 0);
is(q1("SELECT count(*) FROM messages WHERE wamid IN ('wamid.p', 'wamid.q') "
      . "AND status = 'delivered'"), 2, 'both applied');

# every delivery names its business number: the same row in every batch
my $phone = { pn => $pn, waba_id => '102290129340398',
              display => '15550783881' };
$pg->query(apply(phones => [ $phone ]));
interleave('two customers of one business number',
           apply(phones => [ $phone ],
                 messages => [ inbound_msg('wamid.a1', $t0,
                                           customer => '4915112345602') ]),
           apply(phones => [ $phone ],
                 messages => [ inbound_msg('wamid.b1', $t0,
                                           customer => '4915112345603') ]),
           0);
is(q1("SELECT count(*) FROM messages WHERE wamid IN ('wamid.a1', 'wamid.b1')"),
   2, 'both stored');

# skipped only when unchanged: a new display still reaches the row
$pg->query(apply(phones => [ { %$phone, display => '15550783882' } ]));
is(q1("SELECT display_phone_number FROM phone_numbers "
      . "WHERE phone_number_id = '$pn'"), '15550783882',
   'a business number renamed');


# --- status moves rewrite the row only -----------------------------------------
# No index of messages names a column that a status webhook moves
# (sql/011_hot_moves.sql): each move is a HOT update, one new row version
# on the row's own page, instead of a new entry in every index.
$pg->query(apply(messages => [ echo_msg('wamid.hot', $t0) ]));
my @moves = map { apply(statuses => [ status('wamid.hot', @$_) ]) }
            [ sent => $t0 + 1 ], [ delivered => $t0 + 2 ], [ read => $t0 + 3 ];
my $counts = "SELECT pg_stat_get_xact_tuples_updated('messages'::regclass)"
           . " || ' ' || "
           . "pg_stat_get_xact_tuples_hot_updated('messages'::regclass)";
# one transaction (psql -c); psql prints every result, the counts last
my @out = split /\n/, q1(join(";\n", @moves, $counts));
is($out[-1], '3 3',
   'sent, delivered, read: three updates of the message, all HOT');
is(q1("SELECT status FROM messages WHERE wamid = 'wamid.hot'"), 'read',
   'and the message is read');


# --- plans that look rows up by key, on a young database -----------------------
# A plan made while a table holds a few pages scans it, and a session keeps
# a generic plan until autoanalyze; these functions look rows up by key, so
# their plans must be index lookups from a session's first call.  The
# tables here hold a few rows and were never analyzed.

# The plans a new session's statements ran with (auto_explain), as text.
sub plans {
    my ($sql) = @_;
    my $s = session();
    run_sql($s, "LOAD 'auto_explain';\n"
        . "SET auto_explain.log_min_duration = 0;\n"
        . "SET auto_explain.log_nested_statements = on;\n"
        . "SET auto_explain.log_level = notice;\n"
        . "SET client_min_messages = notice;\n"
        . $sql);
    my $ok = finished($s, 10);
    close_session($s);
    return ($ok, join("\n", @{ $s->{seen} }));
}

# One statement's text and plan, found by how its text begins.
sub plan_of {
    my ($plans, $begins) = @_;
    my ($plan) = $plans =~ /(Query Text: \Q$begins\E.*?)(?=NOTICE:|\z)/s;
    return $plan // "no plan for '$begins' in:\n$plans";
}

# The status derivation's UPDATE was planned again at every call that had a
# status (0.67 ms to plan, 0.11 to run), and would scan message_statuses
# (sql/013_derive_plan.sql): its first plan must be the generic one ($n in
# its conditions, not the call's values).
{
    my ($ok, $plans) =
        plans(apply(statuses => [ status('wamid.plan', 'sent', $t0 + 1) ]));
    ok($ok, 'a status applied with its plans shown');
    my $plan = plan_of($plans, 'WITH derived AS (');
    ok($plan =~ /Index Cond: \(wamid = ANY \(\$\d+\)\)/,
       'the derivation runs its generic plan from the first call')
        or diag($plan);
    ok($plan =~ /Index Scan (?:using|on) message_statuses_pkey/
           && $plan !~ /Seq Scan/,
       'and it looks the statuses up by wamid, not by scanning')
        or diag($plan);
}

# A statement run by $sql must find rows through $index, not a scan.
sub uses_index {
    my ($sql, $begins, $index, $name) = @_;
    my ($ok, $plans) = plans($sql);
    ok($ok, "$name: run with its plans shown");
    my $plan = plan_of($plans, $begins);
    ok($plan =~ /(?:using|on) \Q$index\E/ && $plan !~ /Seq Scan on/,
       "$name: rows looked up through $index, not by scanning a table")
        or diag($plan);
}

# Every batch with a new message looks for its edits and revokes: a scan of
# messages cost 3 to 9 ms per batch at 10,000 rows; and the sender's sweep
# reconciles unknown messages every 5 s (sql/015_index_lookups.sql).
uses_index(apply(messages => [ inbound_msg('wamid.planned', $t0 + 5) ]),
           'touched := ARRAY(', 'messages_refers_to', 'edits and revokes');
uses_index("SELECT outbox_id FROM wa_send_reconcile('test')",
           'WITH pair AS (', 'messages_unsent', 'unknown messages');
# conversation.update names the contact's profile name (sql/016), even
# when the statistics say contacts is tiny
uses_index("ANALYZE contacts;\n"
           . apply(messages => [ inbound_msg('wamid.named', $t0 + 6) ]),
           "SELECT string_agg(wa_conversation_line(v, k.profile_name)",
           'contacts_pkey', 'profile names');

done_testing;
