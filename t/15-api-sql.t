# The agent API's SQL functions (sql/004_api.sql), called the way the
# module calls them: one function per request, bound text parameters, the
# caller's scope first; (status, body) checked for every endpoint, every
# error and the scope rules.
use strict;
use warnings;
use utf8;
use Digest::MD5 qw(md5_hex);
use Encode qw(encode decode);
use IPC::Open3;
use JSON::PP;
use Test::More;
use Time::HiRes qw(time sleep);
use WaTest;

my $t0 = time;
my $pg = WaTest::Postgres->start;
# the worker's configuration names a Redis; migrate itself does not use it
my $redis = WaTest::Redis->start;
my $worker = WaTest::Worker->new(redis => $redis, pg => $pg);

my ($ok, $out) = $worker->migrate;
ok($ok, 'migrate') or BAIL_OUT($out);
like($out, qr/migration 004_api\.sql applied/, '004_api.sql applied');

my $json = JSON::PP->new->utf8->canonical;     # answers: UTF-8 bytes
my $jreq = JSON::PP->new->canonical;           # requests: characters
$ENV{PGCLIENTENCODING} = 'UTF8';


# --- calling the functions ------------------------------------------------

# Runs a psql script; :'name' in it is the value of variable name, quoted by
# psql (PQescapeLiteral), so parameters travel as data as the module's
# bound parameters do.  Returns stdout and stderr together.
sub psql_script {
    my ($sql, %vars) = @_;
    my $pid = open3(my $in, my $outfh, undef,
                    'psql', '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1',
                    '-h', '127.0.0.1', '-p', $pg->port, '-U', 'postgres',
                    '-d', 'wa',
                    map { ('-v', encode('UTF-8', "$_=$vars{$_}")) }
                        sort keys %vars);
    print {$in} encode('UTF-8', $sql);
    close $in;
    local $/;
    my $res = <$outfh> // '';
    waitpid $pid, 0;
    return ($res, $? >> 8);
}


# One psql session for all calls, fed statement by statement (psql flushes
# each result: a call costs a millisecond, not a process).
my ($session_pid, $session_in, $session_out);

sub session_run {
    my ($sql) = @_;
    $session_pid //= open3($session_in, $session_out, undef,
                           'psql', '-X', '-q', '-A', '-t', '-h', '127.0.0.1',
                           '-p', $pg->port, '-U', 'postgres', '-d', 'wa');
    $session_in->autoflush(1);
    print {$session_in} encode('UTF-8', $sql), "SELECT '--end--';\n";
    my $res = '';
    while (defined(my $line = readline $session_out)) {
        last if $line eq "--end--\n";
        $res .= $line;
    }
    return $res;
}

sub session_end {
    return unless $session_pid;
    close $session_in;
    waitpid $session_pid, 0;
    undef $session_pid;
}


# calls([scope, fn, @params], ...) -> ([status, decoded body, raw], ...)
# scope: { agent, phones (array ref, undef: all), only (assigned_only) };
# undef parameters are NULL.  Every call must return exactly one row.
# Parameters travel hex-encoded and the server turns them back into the
# same text, so the function gets exactly the bytes given, with no quoting
# on the way, as with the module's bound parameters.  %o: setup => SQL run
# first (in the same transaction, rolled back afterwards, with txn => 1);
# ids_only => 1: of a list answer only the ids and next_cursor come back
# (JSON::PP is slow on hundreds of whole pages).
sub calls {
    my ($list, %o) = @_;
    my $bind = sub {
        my ($v) = @_;
        return 'NULL' unless defined $v;
        return "convert_from(decode('" . unpack('H*', encode('UTF-8', $v))
             . "', 'hex'), 'UTF8')";
    };
    my $sql = $o{txn} ? "BEGIN;\n" : '';
    $sql .= "$o{setup};\n" if $o{setup};
    for my $c (@$list) {
        my ($scope, $fn, @params) = @$c;
        my $phones = $scope->{phones};
        my @args = ($bind->($scope->{agent}),
                    defined $phones
                        ? 'ARRAY[' . join(', ', map { $bind->($_) } @$phones)
                          . ']::text[]'
                        : 'NULL::text[]',
                    exists $scope->{only} && !defined $scope->{only}
                        ? 'NULL::boolean'
                        : $scope->{only} ? 'true' : 'false',
                    map { $bind->($_) } @params);
        my $what = $o{ids_only}
            ? "r.status || '|' || jsonb_build_object('next_cursor', "
              . "r.body::jsonb->'next_cursor', 'data', coalesce((SELECT "
              . "jsonb_agg(jsonb_build_object('id', e->'id')) FROM "
              . "jsonb_array_elements(r.body::jsonb->'data') e), '[]'))"
            : "r.status || '|' || r.body";
        $sql .= "SELECT $what FROM $fn(" . join(', ', @args)
              . ") r;\nSELECT '--';\n";
    }
    $sql .= "ROLLBACK;\n" if $o{txn};
    my $res = session_run($sql);
    my $rc = 0;
    my @rows = split /^--\n/m, $res;
    my @got;
    for my $i (0 .. $#$list) {
        my $r = $rows[$i] // '';
        if ($rc || $r !~ /\A(\d{3})\|(.*)\n\z/) {
            fail("$list->[$i][1]: exactly one (status, body) row")
                or diag("rc $rc: $res");
            push @got, [ 0, {}, $r ];
            next;
        }
        my ($status, $body) = ($1, $2);
        my $doc = eval { $json->decode($body) };
        fail("$list->[$i][1]: body is JSON: $@") unless $doc;
        push @got, [ $status + 0, $doc // {}, $body ];
    }
    return @got;
}

sub call { my @r = calls([ [ @_ ] ]); return @{ $r[0] } }

sub sql { my ($s) = @_; my $r = $pg->query($s); $r =~ s/\n\z//; return $r }

sub ids { [ map { $_->{id} } @{ $_[0]{data} } ] }

sub uuid_of {
    my $h = md5_hex($_[0]);
    return join '-', unpack 'A8 A4 A4 A4 A12', $h;
}

# an error answer: status, code, and the message naming what was wrong
sub is_error {
    my ($got, $status, $code, $names, $name) = @_;
    my ($st, $doc, $raw) = @$got;
    my $ok = $st == $status && ref $doc->{error} eq 'HASH'
             && ($doc->{error}{code} // '') eq $code
             && (!defined $names
                 || ($doc->{error}{message} // '') =~ /\Q$names\E/);
    ok($ok, "$name: $status $code" . (defined $names ? " naming $names" : ''))
        or diag($raw);
}

my %A = (agent => 'ag1', phones => ['pa']);
my %B = (agent => 'ag1', phones => ['pb']);
my %ALL = (agent => 'ag1', phones => undef);
my %NONE = (agent => 'ag1', phones => []);

my @list_nulls = (undef) x 8;     # phone_number_id .. limit

sub list { my ($scope, %f) = @_;
           return call($scope, 'wa_api_conversations',
                       @f{qw(phone_number_id type status assignee unread q
                             cursor limit)}) }


# --- fixtures -----------------------------------------------------------------

$pg->query(<<'SQL');
INSERT INTO phone_numbers (phone_number_id, display_phone_number)
VALUES ('pa', '15550001'), ('pb', '15550002'), ('pbulk', '15550003');

INSERT INTO contacts (phone_number_id, customer_id, wa_id, profile_name)
VALUES ('pa', '4915100000001', '4915100000001', 'Alice Profile'),
       ('pa', '4915100000002', '4915100000002', 'Bob'),
       ('pb', '4915100000001', '4915100000001', 'Alice on B');

INSERT INTO conversations (id, phone_number_id, customer_id, name, type,
                           status, assignee, unread_count, last_message_at,
                           last_message_id, last_message_preview,
                           last_message_direction, last_customer_message_at)
SELECT wa_conversation_id(pn, cu), pn, cu, na, ty, st, asg, un, lma::timestamptz,
       lmi, lmp, lmd, lcm::timestamptz
FROM (VALUES
  ('pa', '4915100000001', 'Alice', 'owner', 'open', 'ag1', 2,
   '2024-06-01 10:00Z', 'wamid.a1last', 'hello', 'in', '2024-06-01 09:50Z'),
  ('pa', '4915100000002', NULL, 'guest', 'archived', 'ag2', 0,
   '2024-06-01 09:00Z', NULL, NULL, NULL, NULL),
  ('pa', '4915100000003', NULL, NULL, 'closed', NULL, 1,
   '2024-06-01 08:00Z', NULL, NULL, NULL, NULL),
  ('pa', '4915100000004', '50%_off\deal', NULL, 'blocked', NULL, 0,
   NULL, NULL, NULL, NULL, NULL),
  ('pa', '4915100000005', '50xoffydeal', NULL, 'open', NULL, 0,
   NULL, NULL, NULL, NULL, NULL),
  ('pb', '4915100000001', 'Alice B', 'owner', 'open', 'ag1', 5,
   '2024-06-01 11:00Z', NULL, NULL, NULL, NULL),
  ('pb', '4930000000002', 'Zed', NULL, 'open', NULL, 0,
   '2024-06-01 07:00Z', NULL, NULL, NULL, NULL)
) v (pn, cu, na, ty, st, asg, un, lma, lmi, lmp, lmd, lcm);

-- outbound messages for /stats, in a1 (ag1) and a2 (ag2), 2024-05-01
INSERT INTO messages (wamid, conversation_id, phone_number_id, customer_id,
                      direction, source, type, sent_at, body, content, status,
                      status_at, sent_status_at, delivered_at, read_at,
                      played_at, failed_at, error_code, error_title,
                      sender_agent, reply_to)
SELECT w, wa_conversation_id(pn, cu), pn, cu, dir, 'api', 'text',
       sent::timestamptz, 'body ' || w, jsonb_build_object('type', 'text'),
       st, coalesce(fa, pl, rd, dl, se)::timestamptz, se::timestamptz,
       dl::timestamptz, rd::timestamptz, pl::timestamptz, fa::timestamptz,
       CASE WHEN fa IS NOT NULL THEN 131026 END,
       CASE WHEN fa IS NOT NULL THEN 'Message undeliverable' END,
       'ag1', CASE WHEN w = 'wamid.o5' THEN 'wamid.o4' END
FROM (VALUES
  -- wamid, pn, customer, direction, sent_at, status, sent, delivered, read, played, failed
  ('wamid.o1', 'pa', '4915100000001', 'out', '2024-05-01 10:00Z', NULL, NULL, NULL, NULL, NULL, NULL),
  ('wamid.o2', 'pa', '4915100000001', 'out', '2024-05-01 10:01Z', 'sent', '2024-05-01 10:01:05Z', NULL, NULL, NULL, NULL),
  ('wamid.o3', 'pa', '4915100000001', 'out', '2024-05-01 10:02Z', 'sent', '2024-05-01 10:02:05Z', NULL, NULL, NULL, NULL),
  ('wamid.o4', 'pa', '4915100000001', 'out', '2024-05-01 10:03Z', 'delivered', '2024-05-01 10:03:05Z', '2024-05-01 10:03:06Z', NULL, NULL, NULL),
  ('wamid.o5', 'pa', '4915100000001', 'out', '2024-05-01 10:04Z', 'read', '2024-05-01 10:04:05Z', '2024-05-01 10:04:06Z', '2024-05-01 10:04:07.25Z', NULL, NULL),
  ('wamid.o6', 'pa', '4915100000001', 'out', '2024-05-01 10:05Z', 'read', NULL, NULL, '2024-05-01 10:05:07Z', NULL, NULL),
  ('wamid.o7', 'pa', '4915100000001', 'out', '2024-05-01 10:06Z', 'played', '2024-05-01 10:06:05Z', '2024-05-01 10:06:06Z', NULL, '2024-05-01 10:06:09Z', NULL),
  ('wamid.o3b', 'pa', '4915100000002', 'out', '2024-05-01 10:07Z', 'sent', '2024-05-01 10:07:05Z', NULL, NULL, NULL, NULL),
  ('wamid.o8', 'pa', '4915100000002', 'out', '2024-05-01 10:08Z', 'failed', NULL, NULL, NULL, NULL, '2024-05-01 10:08:05Z'),
  ('wamid.o9', 'pa', '4915100000002', 'out', '2024-05-01 10:09Z', 'failed', '2024-05-01 10:09:05Z', NULL, NULL, NULL, '2024-05-01 10:09:09Z'),
  ('wamid.o10', 'pa', '4915100000002', 'in', '2024-05-01 10:10Z', 'delivered', NULL, '2024-05-01 10:10:05Z', NULL, NULL, NULL),
  ('wamid.o11', 'pa', '4915100000002', 'out', '2024-05-02 00:00Z', 'read', '2024-05-02 00:00:01Z', '2024-05-02 00:00:02Z', '2024-05-02 00:00:03Z', NULL, NULL),
  ('wamid.o12', 'pa', '4915100000002', 'out', '2024-05-01 00:00Z', 'read', '2024-05-01 00:00:01Z', '2024-05-01 00:00:02Z', '2024-05-01 00:00:03Z', NULL, NULL),
  ('wamid.ob1', 'pb', '4915100000001', 'out', '2024-05-01 12:00Z', 'read', '2024-05-01 12:00:01Z', '2024-05-01 12:00:02Z', '2024-05-01 12:00:03Z', NULL, NULL),
  ('wamid.ob2', 'pb', '4915100000001', 'out', '2024-05-01 12:01Z', 'read', '2024-05-01 12:01:01Z', '2024-05-01 12:01:02Z', '2024-05-01 12:01:03Z', NULL, NULL)
) v (w, pn, cu, dir, sent, st, se, dl, rd, pl, fa);

-- 45 messages in a3 for paging; three share each sent_at (wamid breaks ties)
INSERT INTO messages (wamid, conversation_id, phone_number_id, customer_id,
                      direction, source, type, sent_at, body, content)
SELECT 'wamid.p' || lpad(i::text, 3, '0'),
       wa_conversation_id('pa', '4915100000003'), 'pa', '4915100000003',
       CASE WHEN i % 2 = 0 THEN 'in' ELSE 'out' END, 'webhook', 'text',
       timestamptz '2024-06-01 07:00Z' + (i / 3) * interval '1 minute',
       'page ' || i, jsonb_build_object('text', jsonb_build_object('body', 'page ' || i))
FROM generate_series(1, 45) i;
SQL

my %id = map { my ($k, $v) = split /\|/; ($k => $v) } split /\n/, sql(
    "SELECT CASE phone_number_id WHEN 'pa' THEN 'a' ELSE 'b' END "
    . "|| right(customer_id, 1), id FROM conversations");
is($id{a1}, uuid_of('pa:4915100000001'),
   'conversation ids are wa_conversation_id(pn, customer)');
my @a_nulls = sort { $b cmp $a } @id{qw(a4 a5)};
my @A_ORDER = (@id{qw(a1 a2 a3)}, @a_nulls);


# --- GET /conversations -----------------------------------------------------

{
    my ($st, $doc) = list(\%A);
    is($st, 200, 'list: 200');
    is_deeply(ids($doc), \@A_ORDER,
              'list: latest activity first, no activity last (id desc)');
    is($doc->{next_cursor}, undef, 'list: one page, no next_cursor');
    my ($a1) = grep { $_->{id} eq $id{a1} } @{ $doc->{data} };
    is_deeply([ @$a1{qw(name profile_name type status assignee unread_count
                        last_message_at last_message_preview
                        last_message_direction last_customer_message_at
                        window_closes_at phone_number_id customer_id
                        reference_link muted_until)} ],
              [ 'Alice', 'Alice Profile', 'owner', 'open', 'ag1', 2,
                '2024-06-01T10:00:00Z', 'hello', 'in', '2024-06-01T09:50:00Z',
                '2024-06-02T09:50:00Z', 'pa', '4915100000001', undef, undef ],
              'list: conversation JSON (profile name, 24-hour window)');

    ($st, $doc) = list(\%ALL);
    is_deeply(ids($doc), [ $id{b1}, @id{qw(a1 a2 a3 b2)}, @a_nulls ],
              'phones NULL: every number');
    ($st, $doc) = list(\%NONE);
    is_deeply([ $st, ids($doc) ], [ 200, [] ], 'phones {}: nothing');
    ($st, $doc) = list(\%B);
    is_deeply(ids($doc), [ @id{qw(b1 b2)} ], 'scope B: only B');
    ($st, $doc) = list({ %A, phones => [ 'pa', 'pb' ] });
    is(scalar @{ $doc->{data} }, 7, 'two numbers in scope: both');

    ($st, $doc) = list(\%A, phone_number_id => 'pb');
    is_deeply([ $st, ids($doc) ], [ 200, [] ],
              'phone_number_id outside the scope: no rows');
    ($st, $doc) = list(\%ALL, phone_number_id => 'pa');
    is_deeply(ids($doc), \@A_ORDER, 'phone_number_id filter');

    my %f = (status => [ 'archived', [ $id{a2} ] ],
             type => [ 'owner', [ $id{a1} ] ],
             assignee => [ 'ag2', [ $id{a2} ] ],
             unread => [ 'true', [ @id{qw(a1 a3)} ] ],
             q => [ 'ALICE', [ $id{a1} ] ]);
    for my $k (sort keys %f) {
        ($st, $doc) = list(\%A, $k => $f{$k}[0]);
        is_deeply(ids($doc), $f{$k}[1], "filter $k=$f{$k}[0]");
    }
    ($st, $doc) = list(\%A, type => 'none');
    is_deeply(ids($doc), [ $id{a3}, @a_nulls ], 'type=none: no type');
    ($st, $doc) = list(\%A, assignee => 'none');
    is_deeply(ids($doc), [ $id{a3}, @a_nulls ], 'assignee=none: unassigned');
    ($st, $doc) = list(\%A, assignee => 'me');
    is_deeply(ids($doc), [ $id{a1} ], 'assignee=me: the caller');
    ($st, $doc) = list(\%A, unread => 'false');
    is_deeply(ids($doc), [ $id{a2}, @a_nulls ], 'unread=false');
    ($st, $doc) = list(\%A, status => 'open', type => 'none');
    is_deeply(ids($doc), [ $id{a5} ], 'filters combine');
    ($st, $doc) = list(\%A, q => 'bob');
    is_deeply(ids($doc), [ $id{a2} ], 'q: contact profile name');
    ($st, $doc) = list(\%A, q => '00000002');
    is_deeply(ids($doc), [ $id{a2} ], 'q: customer number digits');
    ($st, $doc) = list(\%A, q => '+49 151 0000-0003');
    is_deeply(ids($doc), [ $id{a3} ], 'q: a formatted phone number');
    ($st, $doc) = list(\%A, q => 'alice on b');
    is_deeply(ids($doc), [], "q: B's contact name does not leak into A");
    ($st, $doc) = list(\%A, status => '', q => '', limit => '');
    is_deeply(ids($doc), \@A_ORDER, 'empty parameters count as absent');

    is_error([ list(\%A, status => 'deleted') ], 400, 'invalid_parameter',
             'status', 'status=deleted');
    is_error([ list(\%A, unread => 'maybe') ], 400, 'invalid_parameter',
             'unread', 'unread=maybe');
    is_error([ list({ %A, agent => undef }, assignee => 'me') ], 400,
             'invalid_parameter', 'assignee', 'assignee=me without an agent');
    is_error([ list(\%A, q => 'x' x 201) ], 400, 'invalid_parameter', 'q',
             'q of 201 characters');
    for my $l ('0', '101', 'abc', '-1', '1.5', '99999999999') {
        is_error([ list(\%A, limit => $l) ], 400, 'invalid_parameter',
                 'limit', "limit=$l");
    }
    for my $c ('abc', '!!!!', 'YzE6eHl6OjEyMw',   # c1:xyz:123
               'bTE6MTAwOndhbWlk') {               # a messages cursor
        is_error([ list(\%A, cursor => $c) ], 400, 'invalid_parameter',
                 'cursor', "cursor $c");
    }

    # pages of two
    my @seen;
    my $cursor;
    my $pages = 0;
    do {
        ($st, $doc) = list(\%A, limit => '2', cursor => $cursor);
        push @seen, @{ ids($doc) };
        $cursor = $doc->{next_cursor};
        $pages++;
    } while ($cursor && $pages < 10);
    is_deeply(\@seen, \@A_ORDER, 'limit=2: three pages, in order');
    is($pages, 3, 'limit=2: the last page says there is no next one');

    # a cursor made on B's list, replayed in A: A's rows after that key
    ($st, $doc) = list(\%B, limit => '1');
    ($st, $doc) = list(\%A, cursor => $doc->{next_cursor});
    ok(!grep({ $_->{phone_number_id} ne 'pa' } @{ $doc->{data} }),
       "a cursor from B's list shows A's rows only");

    ($st, $doc) = list({ %A, only => 1 });
    is_deeply(ids($doc), [ $id{a1} ], 'assigned_only: own conversations');
    ($st, $doc) = list({ %ALL, only => 1 });
    is_deeply(ids($doc), [ @id{qw(b1 a1)} ], 'assigned_only, all numbers');
    ($st, $doc) = list({ %A, only => 1 }, assignee => 'ag2');
    is_deeply(ids($doc), [], "assigned_only: ?assignee= cannot widen it");
    ($st, $doc) = list({ %ALL, agent => undef, only => 1 });
    is_deeply(ids($doc), [], 'assigned_only without an agent: nothing');
    ($st, $doc) = list({ %ALL, only => undef });
    is_deeply(ids($doc), [ @id{qw(b1 a1)} ],
              'assigned_only NULL is taken as true');
}


# --- GET /conversations/counts ----------------------------------------------

{
    my ($st, $doc) = call(\%A, 'wa_api_conversation_counts', undef);
    is($st, 200, 'counts: 200');
    is_deeply($doc, { total => 5, unread => 2,
                      by_status => { open => 2, archived => 1, closed => 1,
                                     blocked => 1 },
                      by_type => { owner => 1, guest => 1, none => 3 } },
              'counts: scope A');
    ($st, $doc) = call(\%ALL, 'wa_api_conversation_counts', undef);
    is_deeply([ @$doc{qw(total unread)}, $doc->{by_type}{owner} ], [ 7, 3, 2 ],
              'counts: all numbers');
    ($st, $doc) = call(\%ALL, 'wa_api_conversation_counts', 'pb');
    is($doc->{total}, 2, 'counts: phone_number_id');
    ($st, $doc) = call(\%A, 'wa_api_conversation_counts', 'pb');
    is_deeply([ $doc->{total}, $doc->{by_type} ], [ 0, {} ],
              'counts: phone_number_id outside the scope counts nothing');
    ($st, $doc) = call(\%NONE, 'wa_api_conversation_counts', undef);
    is_deeply($doc, { total => 0, unread => 0, by_type => {},
                      by_status => { open => 0, archived => 0, closed => 0,
                                     blocked => 0 } }, 'counts: phones {}');
    ($st, $doc) = call({ %ALL, only => 1 }, 'wa_api_conversation_counts',
                       undef);
    is_deeply([ @$doc{qw(total unread)} ], [ 2, 2 ], 'counts: assigned_only');
}


# --- GET /conversations/{id}/messages -----------------------------------------

{
    my (@all, $before, $pages, @sizes);
    do {
        my ($st, $doc) = call(\%A, 'wa_api_messages', $id{a3}, $before, undef);
        is($st, 200, 'messages: 200') unless $pages;
        my @w = map { $_->{wamid} } @{ $doc->{data} };
        push @sizes, scalar @w;
        unshift @all, @w;
        $before = $doc->{next_before};
        $pages++;
    } while ($before && $pages < 10);
    is_deeply(\@sizes, [ 20, 20, 5 ], 'messages: pages of 20 (default)');
    is_deeply(\@all, [ map { sprintf 'wamid.p%03d', $_ } 1 .. 45 ],
              'messages: every message once, chronological within and '
              . 'across pages (ties broken by wamid)');

    my ($st, $doc) = call(\%A, 'wa_api_messages', $id{a3}, undef, '7');
    my ($st2, $doc2) = call(\%A, 'wa_api_messages', $id{a3},
                            $doc->{next_before}, '7');
    is_deeply([ map { $_->{wamid} } @{ $doc2->{data} } ],
              [ map { sprintf 'wamid.p%03d', $_ } 32 .. 38 ],
              'messages: before= gives the older ones, limit=7');

    ($st, $doc) = call(\%A, 'wa_api_messages', $id{a1}, undef, undef);
    my ($o5) = grep { $_->{wamid} eq 'wamid.o5' } @{ $doc->{data} };
    is_deeply([ @$o5{qw(direction type body status sent_status_at delivered_at
                        read_at played_at failed_at reply_to sender_agent
                        sent_at conversation_id)} ],
              [ 'out', 'text', 'body wamid.o5', 'read', '2024-05-01T10:04:05Z',
                '2024-05-01T10:04:06Z', '2024-05-01T10:04:07.25Z', undef, undef,
                'wamid.o4', 'ag1', '2024-05-01T10:04:00Z', $id{a1} ],
              'message JSON: status and per-transition times');
    is_deeply($o5->{content}, { type => 'text' }, 'message JSON: content');
    ($st, $doc) = call(\%ALL, 'wa_api_messages', $id{a2}, undef, undef);
    my ($o8) = grep { $_->{wamid} eq 'wamid.o8' } @{ $doc->{data} };
    is_deeply([ @$o8{qw(status failed_at error_code error_title)} ],
              [ 'failed', '2024-05-01T10:08:05Z', 131026,
                'Message undeliverable' ], 'message JSON: failure');

    is_error([ call(\%A, 'wa_api_messages', $id{b1}, undef, undef) ], 404,
             'not_found', undef, "messages: B's conversation from scope A");
    is_error([ call({ %A, only => 1 }, 'wa_api_messages', $id{a3}, undef,
                    undef) ], 404, 'not_found', undef,
             'messages: assigned_only, not assigned');
    is_error([ call(\%A, 'wa_api_messages', 'not-a-uuid', undef, undef) ],
             404, 'not_found', undef, 'messages: bad uuid');
    is_error([ call(\%A, 'wa_api_messages', uuid_of('nothing'), undef,
                    undef) ], 404, 'not_found', undef, 'messages: unknown id');
    is_error([ call(\%A, 'wa_api_messages', $id{a3}, 'Y3VyaW91cw', undef) ],
             400, 'invalid_parameter', 'before', 'messages: bad before');
    is_error([ call(\%A, 'wa_api_messages', $id{a3}, undef, '101') ], 400,
             'invalid_parameter', 'limit', 'messages: limit=101');
}


# --- GET /notifications/summary ---------------------------------------------

{
    # windows relative to now(), in the transaction of the call (now() is
    # the same for both): exact boundaries
    my @w = (
        # name, window closes in, status, muted, pn, assignee
        [ 'n1', '30 minutes', 'open', 0, 'pa', 'ag1' ],
        [ 'n2', '1 hour', 'open', 0, 'pa', 'ag1' ],
        [ 'n3', '59 minutes 59 seconds', 'open', 0, 'pa', 'ag1' ],
        [ 'n4', '3 hours', 'open', 0, 'pa', 'ag1' ],
        [ 'n5', '3 hours 1 second', 'open', 0, 'pa', 'ag1' ],
        [ 'n6', '0 seconds', 'open', 0, 'pa', 'ag1' ],
        [ 'n7', '1 second', 'open', 0, 'pa', 'ag1' ],
        [ 'n8', '30 minutes', 'archived', 0, 'pa', 'ag1' ],
        [ 'n9', '30 minutes', 'open', 1, 'pa', 'ag1' ],
        [ 'n10', '30 minutes', 'open', 0, 'pb', 'ag1' ],
        [ 'n11', '30 minutes', 'open', 0, 'pa', 'ag2' ],
    );
    my $setup = join ";\n", map {
        my ($n, $left, $st, $muted, $pn, $asg) = @$_;
        "INSERT INTO conversations (id, phone_number_id, customer_id, name, "
        . "status, assignee, last_customer_message_at, muted_until) VALUES "
        . "(wa_conversation_id('$pn', '$n'), '$pn', '$n', '$n', '$st', "
        . "'$asg', now() - interval '24 hours' + interval '$left', "
        . ($muted ? "now() + interval '1 hour'" : 'NULL') . ")"
    } @w;
    $setup .= ";\nUPDATE conversations SET muted_until = now() - interval "
            . "'1 minute' WHERE customer_id = 'n1'";     # mute expired
    my @r = calls([ [ \%A, 'wa_api_notifications_summary' ],
                    [ { %A, only => 1 }, 'wa_api_notifications_summary' ],
                    [ \%ALL, 'wa_api_notifications_summary' ],
                    [ \%NONE, 'wa_api_notifications_summary' ] ],
                  setup => $setup, txn => 1);
    my $doc = $r[0][1];
    is($r[0][0], 200, 'notifications: 200');
    # n1 and n11 close at the same time: the id decides
    my @same = sort { $a->[3] cmp $b->[3] }
               ([ 'n1', 'critical', 30, uuid_of('pa:n1') ],
                [ 'n11', 'critical', 30, uuid_of('pa:n11') ]);
    is_deeply([ map { [ @$_{qw(name severity minutes_left)} ] }
                @{ $doc->{expiring} } ],
              [ [ 'n7', 'critical', 0 ], (map { [ @$_[0 .. 2] ] } @same),
                [ 'n3', 'critical', 59 ], [ 'n2', 'urgent', 60 ],
                [ 'n4', 'urgent', 180 ] ],
              'expiring: open, within 3 h and not closed, soonest first; '
              . 'critical under 1 h, urgent from 1 h to 3 h; not archived, '
              . 'muted or of another number');
    my ($n1) = grep { $_->{name} eq 'n1' } @{ $doc->{expiring} };
    is_deeply([ @$n1{qw(conversation_id phone_number_id customer_id)} ],
              [ uuid_of('pa:n1'), 'pa', 'n1' ], 'expiring: entry fields');
    like($n1->{window_closes_at}, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/,
         'expiring: window_closes_at is RFC 3339 UTC');
    is($doc->{expiring_total}, 6, 'expiring_total');
    is_deeply($doc->{unread}, { conversations => 2, messages => 3 },
              'unread: conversations and messages in scope');
    is_deeply(ids({ data => $doc->{unread_conversations} }),
              [ @id{qw(a1 a3)} ], 'unread_conversations by activity');
    is_deeply([ map { $_->{name} } @{ $r[1][1]{expiring} } ],
              [ qw(n7 n1 n3 n2 n4) ], 'expiring: assigned_only');
    is_deeply($r[1][1]{unread}, { conversations => 1, messages => 2 },
              'unread: assigned_only');
    ok((grep { $_->{name} eq 'n10' } @{ $r[2][1]{expiring} }),
       'expiring: all numbers include B');
    is_deeply($r[2][1]{unread}, { conversations => 3, messages => 8 },
              'unread: all numbers');
    is_deeply([ scalar @{ $r[3][1]{expiring} }, $r[3][1]{unread}{messages} ],
              [ 0, 0 ], 'notifications: phones {} see nothing');

    @r = calls([ [ \%A, 'wa_api_notifications_summary' ] ], txn => 1,
               setup => "UPDATE conversations SET muted_until = now() + "
                        . "interval '1 day' WHERE id = '$id{a3}'");
    is_deeply($r[0][1]{unread}, { conversations => 1, messages => 2 },
              'unread: a muted conversation is left out');
}

# --- GET /stats ------------------------------------------------------------

{
    my @day = ('2024-05-01T00:00:00Z', '2024-05-02T00:00:00+00:00');
    my ($st, $doc) = call(\%A, 'wa_api_stats', undef, @day);
    is($st, 200, 'stats: 200');
    is_deeply($doc, { from => '2024-05-01T00:00:00Z',
                      to => '2024-05-02T00:00:00Z',
                      data => [ { phone_number_id => 'pa', sent => 9,
                                  delivered => 5, read => 4, failed => 2,
                                  delivery_rate => 0.5556,
                                  read_rate => 0.8 } ] },
              'stats: counted by highest status reached, [from, to), '
              . 'outbound only, rates to 4 decimals');
    ($st, $doc) = call(\%ALL, 'wa_api_stats', undef, @day);
    is_deeply([ map { [ @$_{qw(phone_number_id sent delivered read
                                delivery_rate read_rate)} ] } @{ $doc->{data} } ],
              [ [ 'pa', 9, 5, 4, 0.5556, 0.8 ], [ 'pb', 2, 2, 2, 1, 1 ],
                [ 'pbulk', 0, 0, 0, 0, 0 ] ],
              'stats: every number, zeros where nothing was sent');
    ($st, $doc) = call({ %A, only => 1 }, 'wa_api_stats', undef, @day);
    is_deeply([ @{ $doc->{data}[0] }{qw(sent delivered read failed)} ],
              [ 6, 4, 3, 0 ], 'stats: assigned_only');
    ($st, $doc) = call(\%A, 'wa_api_stats', 'pb', @day);
    is_deeply($doc->{data}, [], 'stats: a number outside the scope: nothing');
    ($st, $doc) = call(\%ALL, 'wa_api_stats', 'pb', @day);
    is_deeply([ map { $_->{phone_number_id} } @{ $doc->{data} } ], [ 'pb' ],
              'stats: phone_number_id');
    ($st, $doc) = call(\%A, 'wa_api_stats', undef,
                       '2024-05-01T12:03:00+02:00', '2024-05-01T12:03:30+02:00');
    is_deeply([ @$doc{qw(from to)}, $doc->{data}[0]{sent} ],
              [ '2024-05-01T10:03:00Z', '2024-05-01T10:03:30Z', 1 ],
              'stats: offsets honoured');
    ($st, $doc) = call(\%A, 'wa_api_stats', undef, undef, undef);
    is($st, 200, 'stats: default range');
    my $span = sql("SELECT extract(epoch FROM '$doc->{to}'::timestamptz - "
                   . "'$doc->{from}'::timestamptz)::integer || ' ' || "
                   . "(abs(extract(epoch FROM now() - '$doc->{to}'::timestamptz))"
                   . " < 60)");
    is($span, '604800 true', 'stats: default is the last 7 days');

    is_error([ call(\%A, 'wa_api_stats', undef, $day[1], $day[0]) ], 400,
             'invalid_parameter', 'from', 'stats: from after to');
    is_error([ call(\%A, 'wa_api_stats', undef, $day[0], $day[0]) ], 400,
             'invalid_parameter', 'from', 'stats: from = to');
    for my $bad ('yesterday', '2024-05-01', '2024-05-01T00:00:00',
                 '2024-13-01T00:00:00Z', '2024-02-30T00:00:00Z', '1714521600') {
        is_error([ call(\%A, 'wa_api_stats', undef, $bad, undef) ], 400,
                 'invalid_parameter', 'from', "stats: from=$bad");
    }
    is_error([ call(\%A, 'wa_api_stats', undef, undef, 'soon') ], 400,
             'invalid_parameter', 'to', 'stats: to=soon');
}


# --- POST /conversations ----------------------------------------------------

sub outbox_count { sql('SELECT count(*) FROM update_outbox') }

# outbox lines: event TAB data LF (sql/001_init.sql)
sub last_event {
    my $lines = sql('SELECT events FROM update_outbox ORDER BY id DESC LIMIT 1');
    return [ map { my ($event, $data) = split /\t/, $_, 2;
                   { event => $event, data => $json->decode($data) } }
             split /\n/, $lines ];
}

sub create { my ($scope, $body) = @_;
             return call($scope, 'wa_api_conversation_create',
                         ref $body ? $jreq->encode($body) : $body) }

{
    my $n = outbox_count();
    my ($st, $doc) = create(\%A, { phone_number_id => 'pa',
                                   phone => '+4915199999999', name => 'New',
                                   reference_link => 'https://crm.example/x?a=1' });
    is($st, 201, 'create: 201');
    is_deeply([ @$doc{qw(id phone_number_id customer_id name reference_link
                         status unread_count last_message_at assignee)} ],
              [ uuid_of('pa:4915199999999'), 'pa', '4915199999999', 'New',
                'https://crm.example/x?a=1', 'open', 0, undef, undef ],
              'create: the conversation, id = wa_conversation_id');
    is(sql("SELECT wa_id FROM contacts WHERE phone_number_id = 'pa' AND "
           . "customer_id = '4915199999999'"), '4915199999999',
       'create: contact upserted');
    is(outbox_count(), $n + 1, 'create: one outbox row');
    my $ev = last_event();
    is_deeply([ scalar @$ev, $ev->[0]{event}, $ev->[0]{data}{phone_number_id},
                $ev->[0]{data}{conversation}{id} ],
              [ 1, 'conversation.update', 'pa', $doc->{id} ],
              'create: conversation.update published');

    ($st, $doc) = create(\%A, { phone => '4915199999999' });
    is_deeply([ $st, $doc->{id}, $doc->{name} ],
              [ 200, uuid_of('pa:4915199999999'), 'New' ],
              'create again (no +, number from the one-number scope): 200, '
              . 'same conversation');
    is(outbox_count(), $n + 1, 'create again, nothing changed: no event');
    ($st, $doc) = create(\%A, { phone => '+4915199999999', name => 'Renamed' });
    is_deeply([ $st, $doc->{name}, $doc->{reference_link} ],
              [ 200, 'Renamed', 'https://crm.example/x?a=1' ],
              'create on an existing one: a given name replaces, '
              . 'an absent link stays');
    is(outbox_count(), $n + 2, 'create with a change: event');
    is(sql("SELECT count(*) FROM conversations WHERE customer_id = "
           . "'4915199999999'"), '1', 'create: never duplicated');

    for my $p ('+1234567', '+123456789012345') {
        ($st) = create(\%ALL, { phone_number_id => 'pb', phone => $p });
        is($st, 201, "create: $p (7 and 15 digits) accepted");
    }

    is_error([ create(\%ALL, { phone => '+4915199999999' }) ], 400,
             'invalid_parameter', 'phone_number_id',
             'create: phone_number_id required with several numbers');
    is_error([ create(\%A, { phone_number_id => 'pb',
                             phone => '+4915199999999' }) ], 403,
             'forbidden', undef, 'create under B from scope A');
    is_error([ create(\%NONE, { phone_number_id => 'pa',
                                phone => '+4915199999999' }) ], 403,
             'forbidden', undef, 'create with phones {}');
    is_error([ create(\%ALL, { phone_number_id => 'nope',
                               phone => '+4915199999999' }) ], 404,
             'not_found', 'phone number not found', 'create: unknown number');
    is_error([ create(\%A, { phone_number_id => 'nope',
                             phone => '+4915199999999' }) ], 403,
             'forbidden', undef,
             'create: unknown number outside the scope is 403, not 404');
    is(sql("SELECT count(*) FROM conversations WHERE phone_number_id = 'pb' "
           . "AND customer_id = '4915199999999'"), '0',
       'create: nothing written by refused calls');

    for my $p ('04915112345678', '+04915112345678', '+123456',
               '+1234567890123456', '+49151abc4567', '', ' +4915112345678',
               '+49 151 12345678', '++4915112345678', "+4915112345678\n") {
        is_error([ create(\%A, { phone => $p }) ], 400, 'invalid_parameter',
                 'phone', "create: phone '$p'");
    }
    is_error([ create(\%A, '{"phone": 4915112345678}') ], 400,
             'invalid_parameter', 'phone', 'create: phone as a number');
    is_error([ create(\%A, { name => 'x' }) ], 400, 'invalid_parameter',
             'phone', 'create: phone missing');
    for my $b ('{"phone":', 'not json', '', '   ', '[1,2]', '"+4915112345678"',
               'null', '{"phone":"\u0000"}') {
        is_error([ create(\%A, $b) ], 400, 'malformed_json', undef,
                 "create: body '$b'");
    }
    is_error([ create(\%A, undef) ], 400, 'malformed_json', undef,
             'create: no body');
    is_error([ create(\%A, { phone => '+4915112345678', phone_id => 'pa' }) ],
             400, 'invalid_parameter', 'phone_id', 'create: unknown field');
    for my $l ('javascript:alert(1)', 'ftp://x.example/', 'http://exa mple.com/',
               "https://x.example/\n", 'https://', 'x.example',
               'https://x.example/' . ('a' x 2031), 42) {
        is_error([ create(\%A, { phone => '+4915112345678',
                                 reference_link => $l }) ], 400,
                 'invalid_parameter', 'reference_link',
                 'create: reference_link ' . substr($l, 0, 30));
    }
    ($st) = create(\%A, { phone => '+4915112340000',
                          reference_link => 'HTTPS://x.example/' . ('a' x 2030) });
    is($st, 201, 'create: a 2048-character link is accepted');
    is_error([ create(\%A, { phone => '+4915112345678', name => 'n' x 257 }) ],
             400, 'invalid_parameter', 'name', 'create: name of 257');
    is_error([ create(\%A, { phone => '+4915112345678', name => '' }) ],
             400, 'invalid_parameter', 'name', 'create: empty name');

    # assigned_only: what it creates is its own; others' are refused
    ($st, $doc) = create({ %A, only => 1 }, { phone => '+4915177777777' });
    is_deeply([ $st, $doc->{assignee} ], [ 201, 'ag1' ],
              'create, assigned_only: assigned to the creator');
    is_error([ create({ %A, only => 1 }, { phone => '+4915100000002' }) ],
             403, 'forbidden', undef,
             "create, assigned_only: someone else's conversation");
    is_error([ create({ %A, only => 1 }, { phone => '+4915100000003' }) ],
             403, 'forbidden', undef,
             'create, assigned_only: an unassigned conversation');
    ($st) = create({ %A, only => 1 }, { phone => '+4915100000001' });
    is($st, 200, 'create, assigned_only: its own conversation');

    # concurrent creates of one number: one 201, the others 200, one row
    my $at = sql("SELECT (now() + interval '700 milliseconds')::text");
    my @kids;
    for (1 .. 6) {
        my $pid = open3(my $in, my $outfh, undef,
                        'psql', '-X', '-q', '-A', '-t', '-h', '127.0.0.1',
                        '-p', $pg->port, '-U', 'postgres', '-d', 'wa',
                        '-v', "at=$at");
        print {$in} "SELECT pg_sleep_until(:'at'::timestamptz);\n"
            . "SELECT status FROM wa_api_conversation_create('ag1', "
            . "'{pa}', false, '{\"phone\":\"+4915155555555\"}');\n";
        close $in;
        push @kids, [ $pid, $outfh ];
    }
    my @st;
    for my $k (@kids) {
        local $/;
        my $o = readline($k->[1]) // '';
        waitpid $k->[0], 0;
        push @st, $o =~ /^(\d{3})$/m;
    }
    is_deeply([ sort @st ], [ 200, 200, 200, 200, 200, 201 ],
              'concurrent creates: one 201, five 200');
    is(sql("SELECT count(*) FROM conversations WHERE customer_id = "
           . "'4915155555555'"), '1', 'concurrent creates: one row');
}


# --- PATCH /conversations/{id} ------------------------------------------------

sub patch { my ($scope, $cid, $body) = @_;
            return call($scope, 'wa_api_conversation_update', $cid,
                        ref $body ? $jreq->encode($body) : $body) }

{
    my $n = outbox_count();
    my %set = (assignee => 'ag3', status => 'archived', type => 'guest',
               name => 'Carol', reference_link => 'https://crm.example/c/3',
               muted_until => '2030-01-01T10:00:00.5+02:00');
    my ($st, $doc) = patch(\%A, $id{a3}, \%set);
    is($st, 200, 'patch: 200');
    is_deeply([ @$doc{qw(assignee status type name reference_link muted_until)} ],
              [ 'ag3', 'archived', 'guest', 'Carol', 'https://crm.example/c/3',
                '2030-01-01T08:00:00.5Z' ], 'patch: every field');
    is(sql("SELECT assignee || status || type || name FROM conversations "
           . "WHERE id = '$id{a3}'"), 'ag3archivedguestCarol', 'patch: stored');
    is(outbox_count(), $n + 1, 'patch: event');
    is(last_event()->[0]{data}{conversation}{status}, 'archived',
       'patch: the event carries the new state');
    ($st, $doc) = patch(\%A, $id{a3}, \%set);
    is_deeply([ $st, outbox_count() ], [ 200, $n + 1 ],
              'patch with the same values: 200, no event');
    ($st, $doc) = patch(\%A, $id{a3}, {});
    is_deeply([ $st, $doc->{name} ], [ 200, 'Carol' ], 'patch {}: unchanged');
    ($st, $doc) = patch(\%A, $id{a3}, { map { ($_ => undef) }
                        qw(assignee type name reference_link muted_until) });
    is_deeply([ @$doc{qw(assignee type name reference_link muted_until status)} ],
              [ undef, undef, undef, undef, undef, 'archived' ],
              'patch: null clears');
    is(outbox_count(), $n + 2, 'patch clearing: event');
    ($st, $doc) = patch(\%A, uc $id{a3}, { status => 'closed' });
    is_deeply([ $st, $doc->{status} ], [ 200, 'closed' ],
               'patch: an upper-case uuid is the same id');

    my @bad = (
        [ { status => 'deleted' }, 'status' ], [ { status => undef }, 'status' ],
        [ { status => 1 }, 'status' ], [ { type => 't' x 65 }, 'type' ],
        [ { type => 'none' }, 'type' ], [ { type => '' }, 'type' ],
        [ { name => 'n' x 257 }, 'name' ], [ { name => [] }, 'name' ],
        [ { assignee => 5 }, 'assignee' ], [ { assignee => '' }, 'assignee' ],
        [ { reference_link => 'file:///etc/passwd' }, 'reference_link' ],
        [ { unread_count => 0 }, 'unread_count' ],
        [ { status => 'open', Status => 'open' }, 'Status' ],
    );
    push @bad, map { [ { muted_until => $_ }, 'muted_until' ] }
        ('tomorrow', '2030-02-30T00:00:00Z', '2030-01-01 10:00', '', 12345,
         '2030-01-01T10:00:00+2', 'infinity', '2030-01-01T25:00:00Z');
    for my $b (@bad) {
        is_error([ patch(\%A, $id{a3}, $b->[0]) ], 400, 'invalid_parameter',
                 $b->[1], 'patch: ' . $jreq->encode($b->[0]));
    }
    is_error([ patch(\%A, $id{a3}, '{"status":') ], 400, 'malformed_json',
             undef, 'patch: malformed JSON');
    is_error([ patch(\%A, $id{a3}, '[]') ], 400, 'malformed_json', undef,
             'patch: an array');
    is(sql("SELECT status FROM conversations WHERE id = '$id{a3}'"), 'closed',
       'patch: refused bodies change nothing');

    for my $bad_id ('not-a-uuid', '', uuid_of('nothing'),
                    "'; DROP TABLE conversations; --") {
        is_error([ patch(\%A, $bad_id, { status => 'open' }) ], 404,
                 'not_found', undef, "patch: id '$bad_id'");
    }
    is_error([ patch(\%A, $id{b1}, { status => 'closed' }) ], 404,
             'not_found', undef, "patch: B's conversation from scope A");
    is_error([ patch({ %A, only => 1 }, $id{a2}, { status => 'closed' }) ],
             404, 'not_found', undef,
             "patch, assigned_only: someone else's conversation");
    is(sql("SELECT status FROM conversations "
           . "WHERE id IN ('$id{b1}', '$id{a2}') ORDER BY phone_number_id"),
       "archived\nopen", 'patch: out-of-scope rows untouched');
    ($st, $doc) = patch({ %A, only => 1 }, $id{a1}, { assignee => 'ag2' });
    is_deeply([ $st, $doc->{assignee} ], [ 200, 'ag2' ],
              'patch, assigned_only: hand over');
    is_error([ patch({ %A, only => 1 }, $id{a1}, { assignee => 'ag1' }) ],
             404, 'not_found', undef,
             'patch, assigned_only: handed over, then out of sight');
    patch(\%A, $id{a1}, { assignee => 'ag1' });
}


# --- POST /conversations/{id}/read --------------------------------------------

{
    my $n = outbox_count();
    my ($st, $doc) = call(\%A, 'wa_api_conversation_read', $id{a1});
    is_deeply([ $st, $doc->{unread_count}, $doc->{id} ], [ 200, 0, $id{a1} ],
              'read: unread_count 0');
    is_deeply([ outbox_count(), last_event()->[0]{data}{conversation}{unread_count} ],
              [ $n + 1, 0 ], 'read: event');
    ($st, $doc) = call(\%A, 'wa_api_conversation_read', $id{a1});
    is_deeply([ $st, outbox_count() ], [ 200, $n + 1 ],
              'read again: 200, no event');
    is_error([ call(\%A, 'wa_api_conversation_read', $id{b1}) ], 404,
             'not_found', undef, "read: B's conversation from scope A");
    is(sql("SELECT unread_count FROM conversations WHERE id = '$id{b1}'"), '5',
       "read: B's unread count untouched");
    is_error([ call(\%A, 'wa_api_conversation_read', 'zzz') ], 404,
             'not_found', undef, 'read: bad uuid');
    is_error([ call({ %B, only => 1, agent => 'ag2' },
                    'wa_api_conversation_read', $id{b1}) ], 404, 'not_found',
             undef, 'read, assigned_only: not assigned');
}


# --- injection: every text parameter is data --------------------------------

{
    my $before = sql("SELECT (SELECT count(*) FROM messages) || ' ' || "
                     . "(SELECT count(*) FROM conversations) || ' ' || "
                     . "(SELECT count(*) FROM contacts)");
    my @evil = ("'", "'); DROP TABLE messages; --",
                "' OR '1'='1", '%', '_', '\\', '"', '$$', "\\'; --",
                ":'v0'", "x' || pg_sleep(5) || '", 'é');
    my %literal = ('%' => [ $id{a4} ], '_' => [ $id{a4} ],
                   '\\' => [ $id{a4} ]);
    my (@c, @expect);
    for my $e (@evil) {
        my $tag = $jreq->encode($e);
        my @p = @list_nulls;
        for my $i (0 .. 7) {
            my @q = @list_nulls;
            $q[$i] = $e;
            push @c, [ \%A, 'wa_api_conversations', @q ];
            my $name = (qw(phone_number_id type status assignee unread q
                           cursor limit))[$i];
            push @expect, [ "list $name=$tag",
                            $name =~ /^(status|unread|cursor|limit)$/
                                ? [ 400, $name ]
                            : $name eq 'q' ? [ 200, $literal{$e} // [] ]
                            : [ 200, [] ] ];
        }
        push @c, [ { %A, agent => $e, only => 1 }, 'wa_api_conversations',
                   @list_nulls ];
        push @expect, [ "list agent=$tag", [ 200, [] ] ];
        push @c, [ { %A, phones => [ $e ] }, 'wa_api_conversations',
                   @list_nulls ];
        push @expect, [ "list phones={$tag}", [ 200, [] ] ];
        push @c, [ \%A, 'wa_api_conversation_counts', $e ];
        push @expect, [ "counts phone_number_id=$tag", [ 'total0' ] ];
        push @c, [ \%ALL, 'wa_api_conversation_create',
                   $jreq->encode({ phone => '+4915112345678',
                                   phone_number_id => $e }) ];
        push @expect, [ "create phone_number_id=$tag", [ 404 ] ];
        push @c, [ \%A, 'wa_api_conversation_create',
                   $jreq->encode({ phone => $e }) ];
        push @expect, [ "create phone=$tag", [ 400, 'phone' ] ];
        push @c, [ \%A, 'wa_api_conversation_create', $e ];
        push @expect, [ "create body=$tag", [ 400, 'malformed_json' ] ];
        push @c, [ \%A, 'wa_api_conversation_update', $e, '{}' ];
        push @expect, [ "patch id=$tag", [ 404 ] ];
        # B's conversation: A's searches above stay as they were
        push @c, [ \%B, 'wa_api_conversation_update', $id{b2},
                   $jreq->encode({ name => "n$e" }) ];
        push @expect, [ "patch name=$tag", [ 'name', "n$e" ] ];
        push @c, [ \%A, 'wa_api_conversation_read', $e ];
        push @expect, [ "read id=$tag", [ 404 ] ];
        push @c, [ \%A, 'wa_api_messages', $e, undef, undef ];
        push @expect, [ "messages id=$tag", [ 404 ] ];
        push @c, [ \%A, 'wa_api_messages', $id{a3}, $e, undef ];
        push @expect, [ "messages before=$tag", [ 400, 'before' ] ];
        push @c, [ \%A, 'wa_api_messages', $id{a3}, undef, $e ];
        push @expect, [ "messages limit=$tag", [ 400, 'limit' ] ];
        push @c, [ \%A, 'wa_api_stats', $e, undef, undef ];
        push @expect, [ "stats phone_number_id=$tag", [ 200, [] ] ];
        push @c, [ \%A, 'wa_api_stats', undef, $e, undef ];
        push @expect, [ "stats from=$tag", [ 400, 'from' ] ];
        push @c, [ \%A, 'wa_api_stats', undef, undef, $e ];
        push @expect, [ "stats to=$tag", [ 400, 'to' ] ];
    }
    my $t = time;
    my @r = calls(\@c);
    my @failed;
    for my $i (0 .. $#c) {
        my ($name, $want) = @{ $expect[$i] };
        my ($st, $doc, $raw) = @{ $r[$i] };
        my $good;
        if ($want->[0] eq 'total0') {
            $good = $st == 200 && $doc->{total} == 0;
        } elsif ($want->[0] eq 'name') {
            $good = $st == 200 && $doc->{name} eq $want->[1];
        } elsif ($want->[0] == 400) {
            $good = $st == 400
                && ($doc->{error}{code} eq $want->[1]
                    || $doc->{error}{message} =~ /^\Q$want->[1]\E /);
        } elsif ($want->[0] == 404) {
            $good = $st == 404 && $doc->{error}{code} eq 'not_found';
        } else {
            my $got = exists $doc->{data}
                ? [ map { $_->{id} // $_->{phone_number_id} } @{ $doc->{data} } ]
                : undef;
            $good = $st == 200 && $got && "@$got" eq "@{ $want->[1] }";
        }
        push @failed, "$name: $raw" unless $good;
    }
    ok(!@failed, scalar(@c) . ' calls with hostile input in every text '
                 . 'parameter: refused or matched literally')
        or diag(join "\n", @failed);
    cmp_ok(time - $t, '<', 5, 'no injected pg_sleep ran');
    is(sql("SELECT (SELECT count(*) FROM messages) || ' ' || "
           . "(SELECT count(*) FROM conversations) || ' ' || "
           . "(SELECT count(*) FROM contacts)"), $before,
       'tables intact after the hostile input');
    is(decode('UTF-8', sql("SELECT name FROM conversations WHERE id = "
                           . "'$id{b2}'")), 'né',
       'a hostile name is stored as written');
}


# --- paging over 10,000 conversations while they change -----------------------

{
    $pg->query(<<'SQL');
INSERT INTO conversations (id, phone_number_id, customer_id, last_message_at,
                           unread_count)
SELECT wa_conversation_id('pbulk', 'c' || i), 'pbulk', 'c' || i,
       CASE WHEN i % 20 <> 0
            THEN timestamptz '2024-01-01' + (i / 4) * interval '1 second' END,
       i % 3
FROM generate_series(1, 10000) i;
ANALYZE conversations;
SQL
    my %orig = map { ($_ => 0) } split /\n/,
        sql("SELECT id FROM conversations WHERE phone_number_id = 'pbulk'");
    my $scope = { agent => 'ag1', phones => [ 'pbulk' ] };
    my ($cursor, $pages, %seen, @dups) = (undef, 0);
    my $n = 0;
    while (1) {
        my $seen_list = join ',', map { "'$_'" } grep { defined }
                        (keys %seen)[0 .. 1];
        # between pages: newer conversations arrive, seen ones get new
        # activity (they move to the top), unseen ones change other columns
        my $setup = join ";\n",
            "INSERT INTO conversations (id, phone_number_id, customer_id, "
            . "last_message_at) SELECT wa_conversation_id('pbulk', 'new' || i), "
            . "'pbulk', 'new' || i, now() FROM generate_series($n, $n + 2) i",
            "INSERT INTO conversations (id, phone_number_id, customer_id) "
            . "VALUES (wa_conversation_id('pbulk', 'none$n'), 'pbulk', "
            . "'none$n')",
            ($seen_list ? "UPDATE conversations SET last_message_at = now(), "
                      . "unread_count = unread_count + 1 WHERE id IN "
                      . "($seen_list)" : ()),
            "UPDATE conversations SET unread_count = unread_count + 1, "
            . "status = 'archived' WHERE phone_number_id = 'pbulk' AND "
            . "id = (SELECT id FROM conversations WHERE phone_number_id = "
            . "'pbulk' ORDER BY md5(id::text || '$n') LIMIT 1) "
            . "AND NOT id IN (" . ($seen_list || "NULL") . ")";
        $n += 3;
        my ($r) = calls([ [ $scope, 'wa_api_conversations', (undef) x 6,
                            $cursor, '100' ] ], setup => $setup,
                       ids_only => 1);
        my ($st, $doc) = @$r;
        last unless $st == 200;
        for my $cid (@{ ids($doc) }) {
            push @dups, $cid if $seen{$cid}++;
        }
        $pages++;
        $cursor = $doc->{next_cursor} or last;
        last if $pages > 200;
    }
    is_deeply(\@dups, [], "paging while rows change: no row twice ($pages pages)");
    my @missing = grep { !$seen{$_} } keys %orig;
    is_deeply(\@missing, [], 'paging while rows change: every original row');
    ok($pages >= 100 && $pages < 120, "paging ended ($pages pages of 100)");
}


# --- plans over 100,000 conversations ---------------------------------------

{
    $pg->query(<<'SQL');
INSERT INTO conversations (id, phone_number_id, customer_id, last_message_at,
                           assignee, unread_count, type, status)
SELECT wa_conversation_id('px' || (i % 9), 'x' || i), 'px' || (i % 9), 'x' || i,
       timestamptz '2024-02-01' + i * interval '1 second',
       CASE WHEN i % 10 = 0 THEN 'agent' || (i % 50) END, (i % 17 = 0)::int,
       CASE WHEN i % 2 = 0 THEN 'guest' END,
       (ARRAY['open', 'archived', 'closed', 'blocked'])[1 + i % 4]
FROM generate_series(1, 90000) i;
ANALYZE;
SQL
    is(sql('SELECT count(*) >= 100000 FROM conversations'), 't',
       '100,000 conversations');
    my ($st, $doc) = list(\%ALL, limit => '5');
    my $c2 = $doc->{next_cursor};
    # name, index, scope, parameters
    my @cases = (
        [ 'all numbers', 'activity_all', \%ALL, (undef) x 8 ],
        [ 'all numbers, page 2', 'activity_all', \%ALL, (undef) x 6, $c2,
          undef ],
        [ 'one number', 'activity', { %ALL, phones => [ 'px3' ] },
          (undef) x 8 ],
        [ 'two numbers', 'activity_all', { %ALL, phones => [ 'px3', 'px5' ] },
          (undef) x 8 ],
        [ 'phone_number_id filter', 'activity', \%ALL, 'px4', (undef) x 7 ],
        [ 'assigned_only', 'assignee_activity',
          { %ALL, agent => 'agent10', only => 1 }, (undef) x 8 ],
        [ 'status and type filters', 'activity_all', \%ALL, undef, 'guest',
          'open', (undef) x 5 ],
    );
    my $auto = "LOAD 'auto_explain';\nSET auto_explain.log_min_duration = 0;\n"
        . "SET auto_explain.log_nested_statements = on;\n"
        . "SET auto_explain.log_analyze = on;\n"
        . "SET auto_explain.log_timing = off;\n"
        . "SET auto_explain.log_level = notice;\nSET client_min_messages = notice";
    for my $case (@cases) {
        my ($name, $index, $scope, @p) = @$case;
        my @ph = @{ $scope->{phones} // [] };
        my ($sql, %vars) = ("$auto;\nSELECT status FROM wa_api_conversations("
                            . ":'agent', " . (defined $scope->{phones}
                                ? 'ARRAY[' . join(', ', map { ":'ph$_'" }
                                                  0 .. $#ph) . ']'
                                : 'NULL') . ', '
                            . ($scope->{only} ? 'true' : 'false'));
        %vars = (agent => $scope->{agent},
                 map { ("ph$_" => $ph[$_]) } 0 .. $#ph);
        for my $i (0 .. $#p) {
            if (defined $p[$i]) { $vars{"p$i"} = $p[$i]; $sql .= ", :'p$i'" }
            else { $sql .= ', NULL' }
        }
        my ($res) = psql_script("$sql);\n", %vars);
        # the page's rows: wa_api_conversation_rows' statement (005)
        my ($plan) = $res =~ /Query Text:\s+SELECT c\.\* FROM conversations c\b.*?\n(Limit.*?)(?=NOTICE:|\z)/s;
        $plan //= $res;
        ok($plan =~ /Index Scan using conversations_$index on conversations/
               # (contacts, for the page's names: 9 rows here, a seq scan
               # is the right plan for them)
               && $plan !~ /Seq Scan on conversations|Sort/
               && $plan =~ /Limit .*actual rows=(\d+)/ && $1 <= 26,
           "list plan, $name: conversations_$index walked in order, "
           . "stopped at the page") or diag($plan);
        note("$name:\n$plan") if $ENV{WA_SHOW_PLANS};
    }
}

session_end();
cmp_ok(time - $t0, '<', 60, sprintf('under a minute (%.1f s)', time - $t0));
done_testing;
