# Meta delivers at least once, batched and out of order: the same
# deliveries in order once, repeated 3x shuffled with statuses first, and
# the same again drained by two workers at once, must converge to
# byte-identical tables.
use strict;
use warnings;
use JSON::PP;
use List::Util qw(shuffle);
use Test::More;
use WaTest;

my $pg = WaTest::Postgres->start;
$pg->psql_ok('postgres', 'CREATE DATABASE wa2');
my $redis = WaTest::Redis->start;

my $json = JSON::PP->new->canonical->ascii;
my @pns = ([ '106540352242922', '15550783881' ], [ '206540352242922', '15550783882' ]);
my @customers = map { 4915112345600 + $_ } 1 .. 6;
my $t0 = 1749416000;

sub envelope {
    my (@changes) = @_;
    return { object => 'whatsapp_business_account',
             entry => [ { id => '102290129340398', changes => \@changes } ] };
}

sub value {
    my ($pn, %v) = @_;
    return { field => 'messages', value => {
        messaging_product => 'whatsapp',
        metadata => { phone_number_id => $pn->[0],
                      display_phone_number => $pn->[1] }, %v } };
}

my (@messages, @statuses, @echoes, $seq);
for my $i (1 .. 40) {
    my $pn = $pns[ $i % 2 ];
    my $c = $customers[ $i % @customers ];
    my $ts = $t0 + $i * 7;
    push @messages, value($pn,
        contacts => [ { profile => { name => "Customer $c v$i" }, wa_id => "$c" } ],
        messages => [ { from => "$c", id => "wamid.in.$i", timestamp => "$ts",
                        type => 'text', text => { body => "hello $i \x{e9}" } } ]);
    if ($i % 4 == 1) {       # an edit, then another, of this message
        for my $e (1, 2) {
            push @messages, value($pn, messages => [ {
                from => "$c", id => "wamid.edit.$i.$e", timestamp => $ts + 60 * $e,
                type => 'edit', edit => { original_message_id => "wamid.in.$i",
                    message => { type => 'text', text => { body => "hello $i, edited $e" } } } } ]);
        }
    }
    if ($i % 4 == 2) {       # revoked
        push @messages, value($pn, messages => [ {
            from => "$c", id => "wamid.revoke.$i", timestamp => $ts + 90,
            type => 'revoke', revoke => { original_message_id => "wamid.in.$i" } } ]);
    }
    my $out = "wamid.out.$i";
    push @echoes, { field => 'smb_message_echoes', value => {
        messaging_product => 'whatsapp',
        metadata => { phone_number_id => $pn->[0],
                      display_phone_number => $pn->[1] },
        message_echoes => [ { from => $pn->[1], to => "$c", id => $out,
                              timestamp => $ts + 1, type => 'text',
                              text => { body => "answer $i" } } ] } };
    my @st = ('sent', 'delivered', 'read');
    @st = ('sent', 'failed') if $i % 5 == 0;
    my $k = 0;
    for my $s (@st) {
        my %st = (id => $out, status => $s, timestamp => $ts + 2 + $k++,
                  recipient_id => "$c");
        $st{errors} = [ { code => 131049, title => 'Not delivered' } ]
            if $s eq 'failed';
        push @statuses, value($pn, statuses => [ \%st ]);
    }
}

# deliveries: one batched (3 entries x 2 changes, each with several
# messages and statuses), the rest one change each
my @deliveries;
my @batched;
for my $k (1 .. 6) {
    my @m = map { @{ $_->{value}{messages} } } splice @messages, 0, 2;
    my @s = map { @{ $_->{value}{statuses} } } splice @statuses, 0, 2;
    push @batched, value($pns[0], messages => \@m, statuses => \@s,
        contacts => [ map { { profile => { name => "Customer $_->{from} b" },
                              wa_id => $_->{from} } } @m ]);
}
push @deliveries, { object => 'whatsapp_business_account', entry => [
    map { { id => '102290129340398',
            changes => [ $batched[2 * $_], $batched[2 * $_ + 1] ] } } 0 .. 2 ] };
my @batched_ids = map { $_->{id} } map { @{ $_->{value}{messages} } } @batched;
my @status_deliveries = map { envelope($_) } @statuses;
my @other = ($deliveries[0], map { envelope($_) } @messages, @echoes);
push @deliveries, @other[1 .. $#other], @status_deliveries;

# run($db, $prefix, $workers, $batch, @bodies): $workers side by side
sub run {
    my ($db, $prefix, $workers, $batch, @bodies) = @_;
    $redis->cmd('XADD', "${prefix}events", '*', 'body', $json->encode($_),
                'rcvd', '1749416383000', 'rid', 'x') for @bodies;
    my @w = map {
        WaTest::Worker->new(redis => $redis, pg => $pg, consumer => "w$_",
            env => { WA_POSTGRES_CONNINFO =>
                         $pg->conninfo =~ s/dbname=wa\b/dbname=$db/r,
                     WA_REDIS_PREFIX => $prefix,
                     WA_WORKER_BATCH => $batch })
    } 1 .. $workers;
    my ($ok, $out) = $w[0]->migrate;
    ok($ok, "$db: migrate") or diag($out);
    $_->start for @w;
    ok(WaTest::wait_until(sub {
        $redis->cmd('XLEN', "${prefix}events") == 0 }, 60), "$db: drained");
    for my $w (@w) {
        is($w->stop, 0, "$db: clean stop");
        $w->check_logs($db);
    }
}

sub dump_db {
    my ($db) = @_;
    my $out = '';
    for my $t ([ phone_numbers => '1' ], [ contacts => '1, 2' ],
               [ conversations => '1' ], [ messages => '1' ],
               [ message_statuses => '1, 2' ], [ field_events => '1, 2, 5' ]) {
        $out .= "-- $t->[0]\n" . $pg->psql_ok($db,
            "SELECT * FROM $t->[0] ORDER BY $t->[1]");
    }
    return $out;
}

run('wa', 'a:', 1, 7, @deliveries);
my $in_order = dump_db('wa');

my @again = shuffle((@other) x 3);
run('wa2', 'b:', 1, 7, shuffle(@status_deliveries), @again,
    shuffle(@status_deliveries));
my $shuffled = dump_db('wa2');

# two workers at once, one delivery per batch: the messages, then each
# message's statuses one after the other (the two workers apply two of
# them at the same time), then all of it again shuffled: edits and their
# originals, echoes and their statuses side by side
$pg->psql_ok('postgres', 'CREATE DATABASE wa3');
run('wa3', 'c:', 2, 1, @other, @status_deliveries,
    shuffle(@other, @status_deliveries));
my $concurrent = dump_db('wa3');

ok(length $in_order > 1000, 'the in-order run stored data');
is($pg->psql_ok('wa', "SELECT count(*) FROM messages WHERE wamid IN ("
                      . join(',', map { "'$_'" } @batched_ids) . ")"),
   scalar(@batched_ids) . "\n",
   'the batched delivery: every message of every change of every entry');
is($pg->psql_ok('wa', 'SELECT count(*) FROM message_statuses'),
   scalar(map { @{ $_->{value}{statuses} } } @statuses, @batched) . "\n",
   'and every status');
is($shuffled, $in_order,
   'shuffled, repeated 3x, statuses first: byte-identical tables');
is($concurrent, $in_order,
   'the same applied by two workers side by side: byte-identical tables');

sub q1 { $pg->query($_[0]) =~ s/\n$//r }
is(q1('SELECT count(*) FROM messages'), 80 + 20 + 10,
   '80 messages, 20 edits and 10 revokes, each once');
is(q1("SELECT sum(unread_count) FROM conversations"), 40 + 20 + 10,
   'unread grew once per inbound message');
is(q1("SELECT body FROM messages WHERE wamid = 'wamid.in.5'"),
   'hello 5, edited 2', 'an edited message shows its latest edit');
is(q1("SELECT count(*) FROM messages WHERE wamid LIKE 'wamid.in.%' AND "
      . "revoked_at IS NOT NULL"), 10, 'revokes mark their originals');
is(q1("SELECT count(*) FROM messages WHERE source = 'echo' AND "
      . "status = 'read' AND sent_status_at IS NOT NULL AND "
      . "delivered_at IS NOT NULL AND read_at IS NOT NULL"), 32,
   'echoed messages: read, with every transition time');
is(q1("SELECT count(*) FROM messages WHERE status = 'failed' AND "
      . "error_code = 131049"), 8, 'failed is terminal, with its code');
is(q1("SELECT count(*) FROM conversations c JOIN messages m "
      . "ON m.wamid = c.last_message_id WHERE m.sent_at < ALL "
      . "(SELECT max(sent_at) FROM messages x WHERE x.conversation_id = c.id)"),
   0, 'last message is the newest');
my (%ev, @unscoped);
for my $u (@{ $redis->cmd('XRANGE', 'a:updates', '-', '+') }) {
    my %f = @{ $u->[1] };
    $ev{ $f{event} }++;
    # no conversation is assigned here: every message event says so, with
    # "assignee" right after conversation_id (the SSE relay's filter)
    push @unscoped, "$f{event} $f{data}"
        if $f{event} =~ /^message\./
           && ($f{data} !~ /"conversation_id" ?: ?"[^"]+", ?"assignee" ?:/
               || defined decode_json($f{data})->{assignee});
}
ok($ev{'message.status'}, "message.status published ($ev{'message.status'})");
ok($ev{'message.new'} && $ev{'message.echo'}, 'message.new, .echo published');
is_deeply(\@unscoped, [], 'message events: "assignee": null, after '
          . 'conversation_id');

like(q1("SELECT profile_name FROM contacts WHERE customer_id = "
        . "'$customers[0]' AND phone_number_id = '$pns[0][0]'"),
     qr/^Customer $customers[0] v36$/, 'the newest profile name wins');

done_testing;
