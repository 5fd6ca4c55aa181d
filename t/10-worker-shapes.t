# whatsapp-worker: every payload shape in t/fixtures/meta lands in
# PostgreSQL, asserted row by row against the payload itself.
use strict;
use warnings;
use JSON::PP;
use Test::More;
use Time::HiRes qw(time);
use WaTest;

my $pg = WaTest::Postgres->start;
my $redis = WaTest::Redis->start;
my $worker = WaTest::Worker->new(redis => $redis, pg => $pg);

my ($ok, $out) = $worker->migrate;
ok($ok, 'migrate') or diag($out);
like($out, qr/migration 001_init.sql applied/, 'migrations applied in order');
($ok, $out) = $worker->migrate;
ok($ok && $out =~ /up to date/, 'migrate again: nothing to do') or diag($out);

my @files = sort glob 't/fixtures/meta/*.json';
cmp_ok(scalar @files, '>=', 50, 'fixtures: ' . scalar @files);
my (%want_msg, %want_status, %want_field, $n);
for my $f (@files) {
    # the fixtures reuse wamids across files; real ones are unique
    (my $body = slurp($f)) =~ s/"(wamid\.[^"]+)"/"$1.$n"/g;
    $redis->cmd('XADD', 'wa:events', '*', 'body', $body,
                'rcvd', int(time * 1000), 'rid', ++$n);
    my $p = decode_json($body);
    for my $entry (@{ $p->{entry} }) {
        for my $ch (@{ $entry->{changes} }) {
            my ($field, $v) = @$ch{qw(field value)};
            if ($field eq 'messages') {
                $want_msg{ $_->{id} } = [ $_->{type}, 'in', 'webhook', $f ]
                    for @{ $v->{messages} // [] };
                $want_status{"$_->{id} $_->{status}"} = $f
                    for @{ $v->{statuses} // [] };
                $want_field{'messages.errors'}++ if $v->{errors};
            } elsif ($field eq 'smb_message_echoes') {
                $want_msg{ $_->{id} } = [ $_->{type}, 'out', 'echo', $f ]
                    for @{ $v->{message_echoes} // [] };
            } elsif ($field eq 'history') {
                for my $h (@{ $v->{history} }) {
                    $want_field{'history.errors'}++ if $h->{errors};
                    for my $t (@{ $h->{threads} // [] }) {
                        $want_msg{ $_->{id} } =
                            [ $_->{type},
                              $_->{from} eq $v->{metadata}{display_phone_number}
                                  ? 'out' : 'in', 'history', $f ]
                            for @{ $t->{messages} };
                    }
                }
            } else {
                $want_field{$field}++;
            }
        }
    }
}

$worker->start;
ok($worker->drained(60), 'the worker drained wa:events');

my %got_msg = map { my @c = split /\|/; ($c[0] => [ @c[1 .. 3] ]) }
    split /\n/, $pg->query('SELECT wamid, type, direction, source FROM messages');
for my $id (sort keys %want_msg) {
    my ($type, $dir, $src, $f) = @{ $want_msg{$id} };
    is_deeply($got_msg{$id}, [ $type, $dir, $src ],
              "$f: message $type $dir $src");
}
is(scalar keys %got_msg, scalar keys %want_msg, 'no message row too many');

my %got_status = map { ($_ => 1) } split /\n/,
    $pg->query("SELECT wamid || ' ' || status FROM message_statuses");
ok($got_status{$_}, "$want_status{$_}: status $_") for sort keys %want_status;

my %got_field;
$got_field{$_}++ for split /\n/, $pg->query('SELECT field FROM field_events');
for my $field (sort keys %want_field) {
    ok($got_field{$field}, "field $field kept ($want_field{$field} payloads)");
}

is($pg->query("SELECT count(*) FROM webhook_log_default"), "0\n",
   "the webhook log goes to today's partition, created at start");
is($pg->query("SELECT result, count(*) FROM webhook_log GROUP BY 1"),
   "ok|$n\n", "all $n deliveries logged as ok");
is($pg->query("SELECT count(*) FROM webhook_log WHERE body IS NULL OR "
              . "length(body) = 0"), "0\n", 'raw bodies kept');

# --- column by column, for the shapes agents look at
sub row { $pg->query($_[0]) =~ s/\n$//r }

is(row("SELECT body, status FROM messages WHERE type = 'text' AND "
       . "content->'text'->>'body' = 'Does it come in another color?' "
       . "LIMIT 1"), 'Does it come in another color?|',
   'text: body');
like(row("SELECT media_id || ' ' || media_mime_type FROM messages "
         . "WHERE type = 'image' AND source = 'webhook' LIMIT 1"),
     qr/^\S+ image\/\w+$/, 'image: media id and mime type');
like(row("SELECT body FROM messages WHERE type = 'location' AND "
         . "source = 'webhook' LIMIT 1"), qr/\S/, 'location: summary');
like(row("SELECT body FROM messages WHERE type = 'interactive' AND "
         . "content->'interactive'->>'type' = 'button_reply' LIMIT 1"),
     qr/\S/, 'interactive button reply: title');
like(row("SELECT reply_to FROM messages WHERE reply_to IS NOT NULL LIMIT 1"),
     qr/^wamid\./, 'reply context kept');
like(row("SELECT customer_id FROM messages WHERE content ? 'from_user_id' "
         . "AND NOT content ? 'from' LIMIT 1"), qr/^\w+\.\d+$/,
     'BSUID-only sender: keyed by user id');
like(row("SELECT last_error_code FROM contacts WHERE last_error_code IS NOT "
         . "NULL LIMIT 1"), qr/^\d+$/, 'failed status: contact last error');
is(row("SELECT count(*) FROM message_statuses WHERE status = 'failed' AND "
       . "error_code IS NULL"), '0', 'failed statuses carry their code');
like(row("SELECT profile_name FROM contacts WHERE profile_name IS NOT NULL "
         . "LIMIT 1"), qr/\S/, 'profile names kept');
like(row("SELECT status FROM templates LIMIT 1"), qr/^[A-Z_]+$/,
     'template status update applied');
is(row("SELECT count(*) FROM conversations WHERE unread_count <> "
       . "(SELECT count(*) FROM messages m WHERE m.conversation_id = "
       . "conversations.id AND direction = 'in' AND source = 'webhook')"),
   '0', 'unread counts = inbound messages');

# --- realtime events
my $updates = $redis->cmd('XRANGE', 'wa:updates', '-', '+');
my (%events, @unscoped);
for my $u (@$updates) {
    my %f = @{ $u->[1] };
    $events{ $f{event} }++;
    my $data = decode_json($f{data});
    # what the SSE relay filters assigned-only agents on (nothing is
    # assigned here)
    push @unscoped, "$f{event} $f{data}"
        if $f{event} =~ /^message\./
           && !(exists $data->{assignee} && !defined $data->{assignee});
}
ok($events{'message.new'}, "message.new published ($events{'message.new'})");
ok($events{'message.echo'}, 'message.echo published');
ok($events{'conversation.update'}, 'conversation.update published');
ok($events{'template.status'}, 'template.status published');
is_deeply(\@unscoped, [], 'message events carry "assignee": null');

# conversation.update in the API's shape (sql/016), as the API's own
# changes publish it: the contact's profile name, the window's end
my @convs = map { my %f = @{ $_->[1] };
                  $f{event} eq 'conversation.update'
                      ? decode_json($f{data})->{conversation} : () } @$updates;
my ($with_name) = grep { defined $_->{profile_name} } @convs;
ok($with_name, 'conversation.update carries the contact\'s profile_name');
like($with_name && $with_name->{window_closes_at},
     qr/^\d{4}-\d\d-\d\dT[\d:.]+Z$/, '... the window\'s end, in UTC');
is_deeply([ sort keys %{ $convs[-1] } ],
          [ sort keys %{ decode_json(row(
              "SELECT wa_conversation_json(c) FROM conversations c "
              . "WHERE c.id = '$convs[-1]{id}'")) } ],
          '... and every field of the API\'s conversation');
is(row('SELECT count(*) FROM update_outbox'), '0', 'outbox drained');

# --- contacts[] with no message: every customer named, whichever share of
# the batch (FNV-1a of the id, as the worker routes them) it falls in
sub share_of {
    my $h = 2166136261;
    $h = (($h ^ ord) * 16777619) % 2**32 for split //, $_[0];
    return $h % 2;
}

# how many shares the customers fall in
sub shares { return scalar keys %{ { map { (share_of($_) => 1) } @_ } } }

# a delivery of contacts only, one named "Name <id>" per id
sub contacts_body {
    return encode_json(messages_delivery(
        '106540352242922',
        contacts => [ map { { profile => { name => "Name $_" },
                              wa_id => $_ } } @_ ]));
}

# the stored contacts of ids beginning with $prefix, and how many
# transactions stored them: "rows transactions"
sub stored_by {
    return row("SELECT count(*) || ' ' || count(DISTINCT xmin::text) "
               . "FROM contacts WHERE customer_id LIKE '$_[0]%'");
}

my @named = map { "4915100000$_" } 10 .. 17;
is(shares(@named), 2, 'the named customers fall in both shares');
# a batch of fewer than 64 entries is not split (WA_SPLIT_MIN): 64
# deliveries of it (Meta's retries), added at once, are read as one batch
my $named = contacts_body(@named);
$redis->cmd('MULTI');
$redis->cmd('XADD', 'wa:events', '*', 'body', $named,
            'rcvd', int(time * 1000), 'rid', ++$n) for 1 .. 64;
is(scalar @{ $redis->cmd('EXEC') }, 64, 'contacts only: 64 deliveries added');
ok($worker->drained(30), 'contacts only: drained');
is(row("SELECT string_agg(customer_id || '=' || profile_name, ' ' "
       . "ORDER BY customer_id) FROM contacts WHERE customer_id LIKE "
       . "'4915100000%'"), join(' ', map { "$_=Name $_" } @named),
   'contacts only: every customer stored with its name');
is(stored_by('4915100000'), '8 2',
   'contacts only: stored by the batch\'s two shares, one transaction each');

# one delivery alone, its customers in both shares: one transaction (a
# share costs PostgreSQL more than a few rows do)
my @alone = map { "4915100001$_" } 10 .. 17;
is(shares(@alone), 2, 'one delivery\'s customers fall in both shares');
$redis->cmd('XADD', 'wa:events', '*', 'body', contacts_body(@alone),
            'rcvd', int(time * 1000), 'rid', ++$n);
ok($worker->drained(30), 'one delivery: drained');
is(stored_by('4915100001'), '8 1',
   'one delivery: every customer stored, in one transaction');

is($worker->stop, 0, 'SIGTERM: exit status 0');
like($worker->log, qr/whatsapp-worker stopped/, 'clean stop logged');
$worker->check_logs('shapes');
done_testing;
