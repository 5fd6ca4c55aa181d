# The agent API over HTTP: authentication (JWT HS256/RS256/ES256 from the
# Authorization header, the wa_token cookie or ?access_token=; NGINX
# variables; off), every endpoint against a real PostgreSQL, scope
# isolation, the error statuses, the worker's wake-up through Redis, the
# metrics, and nginx -t refusing an API location it cannot secure.
use strict;
use warnings;
use File::Temp qw(tempdir);
use JSON::PP;
use Test::More;
use Time::HiRes qw(time);
use WaTest;
use WaTest::Jwt;

my $json = JSON::PP->new->utf8->canonical;

my $pg = WaTest::Postgres->start;
my $redis = WaTest::Redis->start;
my ($ok, $out) = WaTest::Worker->new(redis => $redis, pg => $pg)->migrate;
ok($ok, 'migrations applied') or BAIL_OUT($out);

$pg->query(<<'SQL');
INSERT INTO phone_numbers (phone_number_id, display_phone_number)
VALUES ('pa', '15550001'), ('pb', '15550002');

INSERT INTO contacts (phone_number_id, customer_id, wa_id, profile_name)
VALUES ('pa', '4915100000001', '4915100000001', 'Alice'),
       ('pb', '4915100000001', '4915100000001', 'Alice on B');

INSERT INTO conversations (id, phone_number_id, customer_id, name, type,
                           status, assignee, unread_count, last_message_at,
                           last_customer_message_at)
SELECT wa_conversation_id(pn, cu), pn, cu, na, ty, st, asg, un,
       lma::timestamptz, lcm::timestamptz
FROM (VALUES
  ('pa', '4915100000001', 'Alice', 'owner', 'open', 'ag1', 2,
   '2024-06-01 10:00Z', '2024-06-01 09:50Z'),
  ('pa', '4915100000002', NULL, 'guest', 'archived', 'ag2', 0,
   '2024-06-01 09:00Z', NULL),
  ('pa', '4915100000003', NULL, NULL, 'closed', NULL, 1,
   '2024-06-01 08:00Z', NULL),
  ('pb', '4915100000001', 'Alice B', 'owner', 'open', 'ag1', 5,
   '2024-06-01 11:00Z', NULL)
) v (pn, cu, na, ty, st, asg, un, lma, lcm);

INSERT INTO messages (wamid, conversation_id, phone_number_id, customer_id,
                      direction, source, type, sent_at, body, content,
                      status)
SELECT 'wamid.p' || lpad(i::text, 2, '0'),
       wa_conversation_id('pa', '4915100000003'), 'pa', '4915100000003',
       'out', 'api', 'text',
       timestamptz '2024-05-01 07:00Z' + i * interval '1 minute',
       'page ' || i, '{}', 'read'
FROM generate_series(1, 7) i;
SQL

my %id = map { my ($k, $v) = split /\|/; ($k => $v) } split /\n/,
    $pg->query("SELECT phone_number_id || right(customer_id, 1), id "
               . "FROM conversations");

# --- keys and tokens ---------------------------------------------------------

my $dir = tempdir('wa-api-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0755, $dir;
my $keys = WaTest::Jwt::keys($dir);
my $secret = 'an HS256 secret of at least 32 bytes, for tests';
my $hs_file = "$dir/hs256.key";
{ open my $f, '>', $hs_file or die $!; print {$f} "$secret\n"; }

my %base = (iss => 'https://idp.test', aud => 'whatsapp');

sub claims { return { %base, exp => time + 300, @_ } }

sub hs { WaTest::Jwt::token(alg => 'HS256', key => $secret,
                            claims => claims(@_)) }

my $tok_a = hs(sub => 'ag1', phone_number_ids => ['pa']);
my $tok_b = hs(sub => 'ag1', phone_number_ids => ['pb']);
my $tok_all = hs(sub => 'ag1', phone_number_ids => '*');
my $tok_ag2 = hs(sub => 'ag2', phone_number_ids => '*',
                 assigned_only => JSON::PP::true);

# --- NGINX ---------------------------------------------------------------------

my $api = "whatsapp_api; whatsapp_postgres_timeout 3s;";
my $nginx = WaTest::Nginx->start(
    http   => "whatsapp_redis " . $redis->addr . ";"
            . " whatsapp_postgres \"" . $pg->conninfo . "\" pool=2;",
    server => "location /wa/v1/ { $api whatsapp_auth jwt $hs_file;"
            . "   whatsapp_auth_issuer https://idp.test;"
            . "   whatsapp_auth_audience whatsapp;"
            . "   client_max_body_size 1k; }"
            . " location /rs/ { $api whatsapp_auth jwt $keys->{rsa_pub}; }"
            . " location /es/ { $api whatsapp_auth jwt $keys->{ec_pub}; }"
            . " location /hdr/ { $api"
            . "   whatsapp_auth scope \$http_x_agent \$http_x_phones"
            . "                       \$http_x_assigned; }"
            . " location /open/ { $api whatsapp_auth off; }"
            . " location /noslash { $api whatsapp_auth off; }"
            . " location = /metrics { whatsapp_status; }");
ok(wait_until(sub { $nginx->count_log(qr/PostgreSQL \S+ connection \d+ ready/)
                    >= 4 }, 10),
   'both workers opened their two PostgreSQL connections')
    or diag($nginx->log_tail);

# call(method, path, token | {headers}, body) -> response with ->{doc};
# answers are counted by status class, as whatsapp_status should
my %answered;

sub call {
    my ($method, $path, $auth, $body) = @_;
    my $h = ref $auth eq 'HASH' ? { %$auth }
          : defined $auth ? { Authorization => "Bearer $auth" } : {};
    $h->{'Content-Type'} = 'application/json' if defined $body;
    my $res = http_request($nginx->port, $method, $path, $h, $body);
    $res->{doc} = eval { $json->decode($res->{body}) } if length $res->{body};
    $answered{ int($res->{status} / 100) . 'xx' }++;
    return $res;
}

sub ids { [ map { $_->{id} } @{ $_[0]{doc}{data} // [] } ] }

# an error answer: status, JSON code (and message), headers of every answer
sub is_api_error {
    my ($res, $status, $code, $message, $name) = @_;
    is($res->{status}, $status, "$name: $status") or diag($res->{raw});
    is($res->{doc}{error}{code}, $code, "$name: error code $code")
        or diag($res->{body});
    like($res->{doc}{error}{message}, $message, "$name: message")
        if defined $message;
    is($res->{headers}{'content-type'}, 'application/json',
       "$name: application/json");
    is($res->{headers}{'cache-control'}, 'no-store', "$name: no-store");
}

my $P = '/wa/v1';


# --- authentication --------------------------------------------------------

{
    my $res = call(GET => "$P/conversations");
    is_api_error($res, 401, 'unauthorized', qr/^authentication required$/,
                 'no token');
    is($res->{headers}{'www-authenticate'}, 'Bearer realm="whatsapp"',
       'no token: a plain challenge');

    $res = call(GET => "$P/conversations", { Authorization => 'Basic YTpi' });
    is($res->{status}, 401, 'Basic credentials are not a token');
    is($res->{headers}{'www-authenticate'}, 'Bearer realm="whatsapp"',
       'Basic credentials: a plain challenge');

    my $now = time;
    my %bad = (
        'expired' => [ hs(sub => 'ag1', phone_number_ids => '*',
                          exp => $now - 100), 'token expired' ],
        'not yet valid' => [ hs(sub => 'ag1', phone_number_ids => '*',
                                nbf => $now + 100), 'token not yet valid' ],
        'alg none' => [ WaTest::Jwt::token(alg => 'none',
                            claims => claims(sub => 'ag1',
                                             phone_number_ids => '*')),
                        'unexpected token algorithm' ],
        'RS256 for an HS256 key' => [
            WaTest::Jwt::token(alg => 'RS256', key => $keys->{rsa_key},
                               claims => claims(sub => 'ag1',
                                                phone_number_ids => '*')),
            'unexpected token algorithm' ],
        'wrong secret' => [ WaTest::Jwt::token(
                                alg => 'HS256', key => 'x' x 40,
                                claims => claims(sub => 'ag1',
                                                 phone_number_ids => '*')),
                            'invalid token signature' ],
        'wrong issuer' => [ hs(sub => 'ag1', phone_number_ids => '*',
                               iss => 'https://evil.test'),
                            'wrong token issuer' ],
        'wrong audience' => [ hs(sub => 'ag1', phone_number_ids => '*',
                                 aud => 'other'), 'wrong token audience' ],
        'no sub' => [ hs(phone_number_ids => '*'), 'invalid token claims' ],
        'not a JWT' => [ 'abc.def', 'malformed token' ],
    );
    # tampered: A's payload with the scope widened, A's signature kept
    my ($h, undef, $s) = split /\./, $tok_a;
    my $wide = WaTest::Jwt::b64u($json->encode(
        claims(sub => 'ag1', phone_number_ids => '*')));
    $bad{tampered} = [ "$h.$wide.$s", 'invalid token signature' ];

    for my $name (sort keys %bad) {
        my ($token, $why) = @{ $bad{$name} };
        $res = call(GET => "$P/conversations", $token);
        is_api_error($res, 401, 'unauthorized', qr/^\Q$why\E$/, $name);
        is($res->{headers}{'www-authenticate'},
           qq{Bearer realm="whatsapp", error="invalid_token", }
           . qq{error_description="$why"}, "$name: WWW-Authenticate");
    }

    $res = call(GET => "$P/conversations",
                hs(sub => 'ag1', phone_number_ids => ['pa'],
                   exp => $now - 10));
    is($res->{status}, 200, 'expired 10 s ago: within the 30 s leeway');

    $res = call(GET => "$P/conversations", { Cookie => "x=1; wa_token=$tok_a" });
    is($res->{status}, 200, 'token in the wa_token cookie');
    is_deeply(ids($res), [ @id{qw(pa1 pa2 pa3)} ], 'cookie: scope A');
    is_api_error(call(POST => "$P/conversations/$id{pa1}/read",
                      { Cookie => "wa_token=$tok_a" }),
                 401, 'unauthorized', qr/^authentication required$/,
                 'the cookie does not authorize a write (CSRF)');

    # (a token in the URL is in every log that has the request line)
    my $in_url = hs(sub => 'ag1', phone_number_ids => ['pa'], jti => 'url');
    $res = call(GET => "$P/conversations?access_token=$in_url&limit=10");
    is($res->{status}, 200, 'token in ?access_token=');
    is_deeply(ids($res), [ @id{qw(pa1 pa2 pa3)} ], 'access_token: scope A');

    $res = call(GET => "$P/conversations", { Authorization => "bearer  $tok_a" });
    is($res->{status}, 200, 'the scheme is case-insensitive');

    $res = call(GET => "$P/conversations?access_token=$tok_b",
                { Authorization => "Bearer $tok_a" });
    is_deeply(ids($res), [ @id{qw(pa1 pa2 pa3)} ],
              'the Authorization header comes before ?access_token=');

    my $rs = WaTest::Jwt::token(alg => 'RS256', key => $keys->{rsa_key},
                                claims => claims(sub => 'ag1',
                                                 phone_number_ids => ['pb']));
    $res = call(GET => '/rs/conversations', $rs);
    is($res->{status}, 200, 'RS256 token');
    is_deeply(ids($res), [ $id{pb1} ], 'RS256: its scope');

    $res = call(GET => '/rs/conversations', WaTest::Jwt::token(
                    alg => 'RS256', key => $keys->{rsa2_key},
                    claims => claims(sub => 'ag1', phone_number_ids => '*')));
    is_api_error($res, 401, 'unauthorized', qr/^invalid token signature$/,
                 'RS256 signed with another key');

    my $es = WaTest::Jwt::token(alg => 'ES256', key => $keys->{ec_key},
                                claims => claims(sub => 'ag1',
                                                 phone_number_ids => ['pa']));
    $res = call(GET => '/es/conversations', $es);
    is($res->{status}, 200, 'ES256 token');
    is_deeply(ids($res), [ @id{qw(pa1 pa2 pa3)} ], 'ES256: its scope');

    $res = call(GET => '/es/conversations', $rs);
    is_api_error($res, 401, 'unauthorized', qr/^unexpected token algorithm$/,
                 'RS256 token for an ES256 key');

    unlike($nginx->error_log, qr/\Q$s\E|\Q$tok_a\E|\Q$es\E/,
           'no token in error.log');
    like($nginx->error_log, qr/API token refused: token expired/,
         'refusals are logged with their reason');
}


# --- endpoints ---------------------------------------------------------------

{
    my $res = call(GET => "$P/conversations", $tok_a);
    is($res->{status}, 200, 'GET conversations: 200');
    is($res->{headers}{'content-type'}, 'application/json', 'JSON');
    is($res->{headers}{'cache-control'}, 'no-store', 'Cache-Control');
    is_deeply(ids($res), [ @id{qw(pa1 pa2 pa3)} ],
              'latest activity first, scope A only');
    is($res->{doc}{data}[0]{name}, 'Alice', 'the conversation JSON');

    $res = call(GET => "$P/conversations?status=archived", $tok_a);
    is_deeply(ids($res), [ $id{pa2} ], 'filter status=archived');

    $res = call(GET => "$P/conversations?q=%41lice&phone_number_id=pa",
                $tok_all);
    is_deeply(ids($res), [ $id{pa1} ], 'percent-decoded filters');

    $res = call(GET => "$P/conversations?limit=2&status=", $tok_a);
    is_deeply(ids($res), [ @id{qw(pa1 pa2)} ], 'limit=2: first page');
    my $cursor = $res->{doc}{next_cursor};
    ok($cursor, 'next_cursor');
    $res = call(GET => "$P/conversations?limit=2&cursor=$cursor", $tok_a);
    is_deeply(ids($res), [ $id{pa3} ], 'cursor: the next page');

    $res = call(HEAD => "$P/conversations", $tok_a);
    is($res->{status}, 200, 'HEAD conversations: 200');
    is($res->{body}, '', 'HEAD: no body');

    $res = call(GET => "$P/conversations/counts", $tok_a);
    is($res->{status}, 200, 'GET conversations/counts: 200');
    is_deeply([ @{ $res->{doc} }{qw(total unread)} ], [ 3, 2 ],
              'counts in scope');
    $res = call(GET => "$P/conversations/counts?phone_number_id=pb",
                $tok_all);
    is($res->{doc}{total}, 1, 'counts of one number');

    $res = call(GET => "$P/conversations/$id{pa3}/messages?limit=5", $tok_a);
    is($res->{status}, 200, 'GET messages: 200');
    is_deeply([ map { $_->{wamid} } @{ $res->{doc}{data} } ],
              [ map { "wamid.p0$_" } 3 .. 7 ], 'newest page, oldest first');
    my $before = $res->{doc}{next_before};
    $res = call(GET => "$P/conversations/$id{pa3}/messages?limit=5"
                      . "&before=$before", $tok_a);
    is_deeply([ map { $_->{wamid} } @{ $res->{doc}{data} } ],
              [ 'wamid.p01', 'wamid.p02' ], 'before=: the older page');

    $res = call(GET => "$P/notifications/summary", $tok_a);
    is($res->{status}, 200, 'GET notifications/summary: 200');
    is_deeply($res->{doc}{unread}, { conversations => 2, messages => 3 },
              'unread in scope');

    $res = call(GET => "$P/stats?from=2024-05-01T00:00:00Z"
                      . "&to=2024-05-01T12:00:00+02:00", $tok_a);
    is($res->{status}, 200, 'GET stats: 200 ("+" is not a space)')
        or diag($res->{body});
    is_deeply([ map { [ @$_{qw(phone_number_id sent read)} ] }
                @{ $res->{doc}{data} } ], [ [ 'pa', 7, 7 ] ],
              'stats of scope A');

    # writes, and the worker woken for each
    my $xlen = sub { $redis->cmd('XLEN', 'wa:events') };
    is($xlen->(), 0, 'reads wake nobody');

    $res = call(POST => "$P/conversations", $tok_a,
                '{"phone":"+4915100000009","name":"Neu"}');
    is($res->{status}, 201, 'POST conversations: 201 created');
    is($res->{doc}{phone_number_id}, 'pa', 'the scope\'s one number');
    my $new = $res->{doc}{id};
    ok(wait_until(sub { $xlen->() == 1 }, 5), 'the worker is woken');
    my ($entry) = @{ $redis->events };
    is_deeply([ @$entry{qw(wake)} ], [ 'outbox' ], 'XADD wake outbox');
    is($pg->query('SELECT count(*) FROM update_outbox'), "1\n",
       'the outbox row the worker will publish');

    $res = call(POST => "$P/conversations", $tok_a,
                '{"phone":"+4915100000009"}');
    is_deeply([ $res->{status}, $res->{doc}{id} ], [ 200, $new ],
              'POST again: 200, the same conversation');

    $res = call(PATCH => "$P/conversations/$new", $tok_a,
                '{"name":"Umbenannt","status":"closed"}');
    is($res->{status}, 200, 'PATCH conversations/{id}: 200');
    is_deeply([ @{ $res->{doc} }{qw(name status)} ], [ 'Umbenannt', 'closed' ],
              'PATCH: changed');

    $res = call(POST => "$P/conversations/$id{pa1}/read", $tok_a);
    is($res->{status}, 200, 'POST conversations/{id}/read: 200');
    is($res->{doc}{unread_count}, 0, 'read: unread_count 0');
    ok(wait_until(sub { $xlen->() == 4 }, 5),
       'every successful write woke the worker');

    $res = call(PATCH => "$P/conversations/$new", $tok_a, '{"status":"x"}');
    is($res->{status}, 400, 'a refused PATCH: 400');
    is($xlen->(), 4, 'a refused write wakes nobody');

    $res = call(GET => '/open/conversations');
    is($res->{status}, 200, 'whatsapp_auth off: 200 without a token');
    is(scalar @{ ids($res) }, 5, 'whatsapp_auth off: every conversation');

    is(call(GET => '/noslash/stats')->{status}, 200,
       'a location without a trailing slash: its paths');
    is(call(GET => '/noslashstats')->{status}, 404,
       'a location without a trailing slash: not a longer name');
}


# --- errors ------------------------------------------------------------------

{
    is_api_error(call(GET => "$P/conversations?limit=1000", $tok_a),
                 400, 'invalid_parameter', qr/limit/, 'limit=1000');
    is_api_error(call(GET => "$P/conversations?status=open&status=closed",
                      $tok_a),
                 400, 'invalid_parameter', qr/^status given twice$/,
                 'a parameter given twice');
    is_api_error(call(GET => "$P/conversations?q=%FF", $tok_a),
                 400, 'invalid_parameter', qr/^q is not valid UTF-8 text$/,
                 'a parameter that is not UTF-8');
    is_api_error(call(GET => "$P/stats?from=yesterday", $tok_a),
                 400, 'invalid_parameter', qr/from/, 'stats from=yesterday');
    is_api_error(call(POST => "$P/conversations", $tok_a, '{"phone":'),
                 400, 'malformed_json', undef, 'a body that is not JSON');
    is_api_error(call(POST => "$P/conversations", $tok_a, "{\"name\":\"\xff\"}"),
                 400, 'malformed_json', qr/UTF-8/, 'a body that is not UTF-8');
    is_api_error(call(POST => "$P/conversations", $tok_a, ''),
                 400, 'malformed_json', undef, 'an empty body');

    is_api_error(call(POST => "$P/conversations", $tok_a,
                      '{"phone":"+4915100000008","phone_number_id":"pb"}'),
                 403, 'forbidden', qr/scope/,
                 'creating on a number outside the scope');

    is_api_error(call(GET => "$P/nothing", $tok_a),
                 404, 'not_found', qr/^no such endpoint$/, 'unknown path');
    is_api_error(call(GET => "$P/conversations/", $tok_a),
                 404, 'not_found', undef, 'a trailing slash');
    is_api_error(call(GET => "$P/conversations/not-a-uuid/messages", $tok_a),
                 404, 'not_found', undef, 'an id that is not a uuid');
    is_api_error(call(GET => "$P/nothing"), 401, 'unauthorized', undef,
                 'unknown path without a token: 401 first');

    my %allow = ("DELETE $P/conversations" => 'GET, HEAD, POST',
                 "PUT $P/conversations/$id{pa1}" => 'PATCH',
                 "PATCH $P/conversations/counts" => 'GET, HEAD',
                 "GET $P/conversations/$id{pa1}/read" => 'POST');
    for my $req (sort keys %allow) {
        my ($m, $path) = split / /, $req;
        my $res = call($m => $path, $tok_a);
        is_api_error($res, 405, 'method_not_allowed', undef, $req);
        is($res->{headers}{allow}, $allow{$req}, "$req: Allow");
    }

    my $res = call(POST => "$P/conversations", $tok_a,
                   '{"phone":"+4915100000007","name":"' . ('x' x 2000) . '"}');
    is_api_error($res, 413, 'payload_too_large', qr/client_max_body_size/,
                 'a body over client_max_body_size');
}


# --- scope isolation ---------------------------------------------------------

{
    my $res = call(GET => "$P/conversations", $tok_b);
    is_deeply(ids($res), [ $id{pb1} ], 'agent B sees only B');

    # A guesses B's ids: not found, exactly like a missing one
    for my $c ([ GET => "$P/conversations/$id{pb1}/messages" ],
               [ POST => "$P/conversations/$id{pb1}/read" ],
               [ PATCH => "$P/conversations/$id{pb1}", '{"name":"mine"}' ])
    {
        is_api_error(call($c->[0], $c->[1], $tok_a, $c->[2]),
                     404, 'not_found', qr/conversation not found/,
                     "A: $c->[0] B's conversation");
    }
    is($pg->query("SELECT name, unread_count FROM conversations "
                  . "WHERE id = '$id{pb1}'"), "Alice B|5\n",
       "B's conversation untouched");

    $res = call(GET => "$P/conversations", $tok_ag2);
    is_deeply(ids($res), [ $id{pa2} ], 'assigned_only: only its own');
    is_api_error(call(GET => "$P/conversations/$id{pa1}/messages", $tok_ag2),
                 404, 'not_found', undef, 'assigned_only: not another\'s');

    # whatsapp_auth scope $http_x_agent $http_x_phones $http_x_assigned
    $res = call(GET => '/hdr/conversations',
                { 'X-Agent' => 'ag1', 'X-Phones' => 'pb' });
    is_deeply(ids($res), [ $id{pb1} ], 'scope from variables: pb');
    $res = call(GET => '/hdr/conversations',
                { 'X-Agent' => 'ag1', 'X-Phones' => 'pa, pb' });
    is(scalar @{ ids($res) }, 5, 'scope from variables: a list');
    $res = call(GET => '/hdr/conversations',
                { 'X-Agent' => 'ag2', 'X-Phones' => '*',
                  'X-Assigned' => 'yes' });
    is_deeply(ids($res), [ $id{pa2} ], 'scope from variables: assigned_only');
    is_api_error(call(GET => '/hdr/conversations', { 'X-Agent' => 'ag1' }),
                 403, 'forbidden', qr/^no valid phone numbers in the scope$/,
                 'scope from variables: no phones');
    is_api_error(call(GET => '/hdr/conversations',
                      { 'X-Agent' => 'ag1', 'X-Phones' => 'p;drop' }),
                 403, 'forbidden', undef, 'scope from variables: a bad id');
    is_api_error(call(GET => '/hdr/conversations', { 'X-Phones' => '*' }),
                 403, 'forbidden', qr/^no valid agent in the scope$/,
                 'scope from variables: no agent');
}


# --- metrics -----------------------------------------------------------------

{
    my $m = http_request($nginx->port, GET => '/metrics')->{body};
    like($m, qr/^whatsapp_postgres_connected 4$/m,
         'PostgreSQL connections up: 2 workers x pool=2');
    my %c = $m =~ /^whatsapp_api_requests_total\{status="(\dxx)"\} (\d+)$/mg;
    is_deeply(\%c, { '2xx' => $answered{'2xx'}, '3xx' => 0,
                     '4xx' => $answered{'4xx'}, '5xx' => 0 },
              'API answers counted by status class, over both workers');
    like($m, qr/^whatsapp_postgres_errors_total\{kind="query"\} 0$/m,
         'no SQL errors');
}

$nginx->stop;
$nginx->check_logs('api');


# --- nginx -t ------------------------------------------------------------------

my $pgconf = 'whatsapp_postgres "host=127.0.0.1 port=5999 dbname=wa";';
my @conf = (
    { name => 'API location without whatsapp_auth', http => $pgconf,
      server => 'location /api/ { whatsapp_api; }',
      error => qr/"whatsapp_api" in \S+nginx\.conf:\d+ needs whatsapp_auth: add "whatsapp_auth jwt KEYFILE;", "whatsapp_auth scope \$agent \$phones;" or, to serve it unauthenticated, "whatsapp_auth off;"/ },
    { name => 'API location without whatsapp_postgres',
      server => 'location /api/ { whatsapp_api; whatsapp_auth off; }',
      error => qr/"whatsapp_api" in \S+nginx\.conf:\d+ needs whatsapp_postgres in the http or server block/ },
    { name => 'API in a regex location', http => $pgconf,
      server => 'location ~ ^/api/ { whatsapp_api; whatsapp_auth off; }',
      error => qr/"whatsapp_api" directive needs a prefix location, e\.g\. "location \/whatsapp\/v1\/"/ },
    { name => 'API in an exact location', http => $pgconf,
      server => 'location = /api/conversations { whatsapp_api;'
              . ' whatsapp_auth off; }',
      error => qr/"whatsapp_api" directive needs a prefix location/ },
    { name => 'auth and postgres inherited', ok => 1,
      http => "$pgconf whatsapp_auth jwt $hs_file;",
      server => 'location /api/ { whatsapp_api; }' },
    { name => 'scope form with literals', ok => 1, http => $pgconf,
      server => 'location /api/ { whatsapp_api;'
              . ' whatsapp_auth scope $remote_user "123 456" 1; }' },
    { name => 'options', ok => 1,
      http => 'whatsapp_postgres "postgresql://u@localhost:5999/wa" pool=8'
            . ' queue=0 connect_timeout=500ms; whatsapp_auth_leeway 1m;',
      server => "whatsapp_postgres_timeout 250ms;"
              . " location /api/ { whatsapp_api; whatsapp_auth off; }" },
    { name => 'missing key file', http => $pgconf,
      server => 'location /api/ { whatsapp_api;'
              . ' whatsapp_auth jwt /nonexistent/key.pem; }',
      error => qr{open\(\) "/nonexistent/key\.pem" failed} },
    { name => 'a private key is not a verification key', http => $pgconf,
      server => "location /api/ { whatsapp_api;"
              . " whatsapp_auth jwt $keys->{rsa_key}; }",
      error => qr/JWT key file "\S+rsa_key\.pem": / },
    { name => 'short HMAC secret', http => $pgconf,
      server => 'location /api/ { whatsapp_api;'
              . " whatsapp_auth jwt $ENV{PWD}/t/fixtures/secret.txt; }",
      error => qr/JWT key file "\S+secret\.txt": / },
    { name => 'bad whatsapp_auth', http => $pgconf,
      server => 'location /api/ { whatsapp_api; whatsapp_auth basic; }',
      error => qr/invalid arguments of "whatsapp_auth"/ },
    { name => 'whatsapp_auth twice', http => $pgconf,
      server => 'location /api/ { whatsapp_api; whatsapp_auth off;'
              . ' whatsapp_auth off; }',
      error => qr/"whatsapp_auth" directive is duplicate/ },
    { name => 'whatsapp_postgres in a location',
      server => "location /api/ { $pgconf }",
      error => qr/"whatsapp_postgres" directive is not allowed here/ },
    { name => 'whatsapp_postgres twice', http => "$pgconf $pgconf",
      error => qr/"whatsapp_postgres" directive is duplicate/ },
    { name => 'bad pool size',
      http => 'whatsapp_postgres "dbname=wa" pool=0;',
      error => qr/invalid parameter "pool=0" of "whatsapp_postgres"/ },
    { name => 'conninfo libpq cannot parse',
      http => 'whatsapp_postgres "dbname=wa password=hunter2 port";',
      error => qr/conninfo that libpq cannot parse/,
      not_error => qr/hunter2/ },
    { name => 'unknown host',
      http => 'whatsapp_postgres "host=no-such-host.invalid dbname=wa";',
      error => qr/cannot resolve host "no-such-host\.invalid"/ },
);

WaTest::Nginx->check_cases(@conf);

done_testing;
