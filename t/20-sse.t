# whatsapp_events: wa:updates as Server-Sent Events through two NGINX
# workers: the stream's bytes, many clients with different scopes and
# filters each getting exactly its updates in order, reconnects with
# Last-Event-ID (no gap, no duplicate), event: reset, heartbeats, HEAD,
# the errors answered before streaming, HTTP/2, the metrics, and nginx -t.
# (Redis outages, slow clients, reloads and connection churn: t/21.)
use strict;
use warnings;
use File::Temp qw(tempdir);
use JSON::PP;
use Test::More;
use Time::HiRes qw(time sleep);
use WaTest;
use WaTest::Jwt;
use WaTest::Sse;

my $json = JSON::PP->new->canonical;
my $HELLO = $WaTest::Sse::HELLO;

my $dir = tempdir('wa-sse-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0755, $dir;
my $hs_file = WaTest::Jwt::hs256_key_file($dir);

sub token { WaTest::Jwt::hs256_token(@_) }

my $redis = WaTest::Redis->start;
my $h2port = free_port();
my $open = 'whatsapp_events; whatsapp_auth off;';
my $nginx = WaTest::Nginx->start(
    http   => "whatsapp_redis " . $redis->addr . ";"
            . " server { listen 127.0.0.1:$h2port http2;"
            . "   location = /open { $open } }",
    server => 'add_header X-Worker $pid;'
            . " location = /events { whatsapp_events;"
            . "   whatsapp_auth jwt $hs_file; }"
            . ' location = /hdr { whatsapp_events;'
            . '   whatsapp_auth scope $http_x_agent $http_x_phones'
            . '                       $http_x_assigned; }'
            . " location = /open { $open }"
            . " location = /hb { $open whatsapp_sse_heartbeat 1s; }"
            . " location = /small { $open whatsapp_sse_replay 5; }"
            . ' location = /status { whatsapp_status; }');
ok(wait_until(sub { $nginx->count_log(qr/relaying wa:updates from/) >= 2 },
              10), 'both workers relay wa:updates')
    or diag($nginx->log_tail);
my @workers = sort split ' ', `pgrep -P ${\ $nginx->pid}`;
is(scalar @workers, 2, 'two worker processes');


# --- helpers -------------------------------------------------------------

sub metric { $nginx->metric($_[0]) }

sub stream { WaTest::Sse->connect($nginx->port, @_) }

# a stream on the given worker process (see WaTest::Sse::connect_on)
sub stream_on { WaTest::Sse->connect_on($_[0], $nginx->port, @_[1 .. $#_]) }

my @published;     # every update relayed, in stream order

# publish(event, data) -> update {id, event, text, data (as a client
# joins its data lines), phone, conversation, assignee}
sub publish {
    my $u = WaTest::Sse::publish($redis, @_);
    push @published, $u;
    return $u;
}

sub last_id {
    my $r = $redis->cmd('XREVRANGE', 'wa:updates', '+', '-', 'COUNT', 1);
    return @$r ? $r->[0][0] : '0-0';
}

# [id, event, data] of what a client got, or of what it should get
sub got { WaTest::Sse::got(@_) }

# an update as the worker writes them (see WaTest::Sse::random_update)
sub random_update { WaTest::Sse::random_update($_[0], \&publish) }

srand 20;


# --- the stream's shape ------------------------------------------------------

{
    my $c = stream('/open');
    is($c->status, 200, 'GET: 200');
    is($c->header('content-type'), 'text/event-stream', 'text/event-stream');
    is($c->header('cache-control'), 'no-cache', 'Cache-Control: no-cache');
    is($c->header('x-accel-buffering'), 'no', 'X-Accel-Buffering: no');
    is($c->header('transfer-encoding'), 'chunked', 'chunked');
    is($c->body, $HELLO, 'first bytes: the hello comment and retry');

    my $u = publish('message.new', '{"phone_number_id":"p1","n":1}',
                    phone => 'p1');
    ok($c->wait_frames(1, 5), 'an update arrives');
    is($c->body, $HELLO . "id: $u->{id}\nevent: message.new\n"
                 . "data: {\"phone_number_id\":\"p1\",\"n\":1}\n\n",
       'one frame: id, event, data, blank line; byte for byte');

    # line breaks in the data: one data: line per line
    my @multi = (
        [ 'LF', qq({"a":1,\n"b":2}), [ '{"a":1,', '"b":2}' ] ],
        [ 'CR', "x\ry", [ 'x', 'y' ] ],
        [ 'CRLF', "x\r\ny", [ 'x', 'y' ] ],
        [ 'blank lines of each kind', "a\n\nb\r\n\r\nc\r\rd",
          [ 'a', '', 'b', '', 'c', '', 'd' ] ],
        [ 'a trailing LF', "x\n", [ 'x', '' ] ],
        [ 'a trailing CRLF', "x\r\n", [ 'x', '' ] ],
        [ 'empty data', '', [ '' ] ],
        [ 'data that is not JSON', 'plain text', [ 'plain text' ] ],
    );
    my @ids = map { publish('note', $_->[1])->{id} } @multi;
    ok($c->wait_frames(1 + @multi, 5), 'the multi-line updates arrive');
    my @f = ($c->frames)[ 1 .. $#multi + 1 ];
    for my $i (0 .. $#multi) {
        is_deeply([ $f[$i]{id}, $f[$i]{lines} ], [ $ids[$i], $multi[$i][2] ],
                  "data with $multi[$i][0]: its data: lines");
    }
    like($c->body, qr/\nid: $ids[1]\nevent: note\ndata: x\ndata: y\n\n/,
         'CR: two data lines, no CR written');
    unlike($c->body, qr/\r/, 'no CR anywhere in the stream');

    # entries that are no update: skipped, the next one arrives
    my $n = $c->frames;
    $redis->cmd('XADD', 'wa:updates', '*', 'event', 'message.new');
    $redis->cmd('XADD', 'wa:updates', '*', 'data', '{}');
    $redis->cmd('XADD', 'wa:updates', '*', 'event', "two\nlines",
                'data', '{}');
    $redis->cmd('XADD', 'wa:updates', '*', 'event', "two\rlines",
                'data', '{}');
    $redis->cmd('XADD', 'wa:updates', '*', 'event', '', 'data', '{}');
    $u = publish('message.new', '{"after":"junk"}');
    ok($c->wait_frames($n + 1, 5), 'an update after entries without one');
    is_deeply(got(($c->frames)[ $n .. $c->frames - 1 ]), got($u),
              'entries without event or data, or with a line break in '
              . 'the event, are not relayed');
    ok(wait_until(sub { $nginx->count_log(qr/has no usable event or data/)
                        >= 5 }, 5),
       'and are logged');
    $c->close;

    # HEAD: the headers of a stream, then the end
    my $res = http_request($nginx->port, HEAD => '/open', {}, undef,
                           timeout => 5);
    is($res->{status}, 200, 'HEAD: 200');
    is($res->{headers}{'content-type'}, 'text/event-stream',
       'HEAD: text/event-stream');
    is($res->{headers}{'cache-control'}, 'no-cache', 'HEAD: no-cache');
    is($res->{body}, '', 'HEAD: no body');
    cmp_ok($res->{elapsed}, '<', 3, 'HEAD: answered, not held open');

    my $h = WaTest::Sse->open($nginx->port, '/open', method => 'HEAD');
    ok($h->wait_hello(5) && $h->ended, 'HEAD over a kept-alive connection: '
       . 'a complete response');
    is($h->body, '', 'HEAD over a kept-alive connection: no body');
    $h->pump(0.5);
    is($h->{trailing} // '', '', 'HEAD: nothing after the headers');
    $h->close;

    # HEAD with a Last-Event-ID to replay: headers only, the replay dropped
    $res = http_request($nginx->port, HEAD => '/open',
                        { 'Last-Event-ID' => $ids[0] }, undef, timeout => 5);
    is_deeply([ $res->{status}, $res->{body} ], [ 200, '' ],
              'HEAD with a Last-Event-ID: 200, no body');

    ok(wait_until(sub { (metric('whatsapp_sse_subscribers') // -1) == 0 },
                  5),
       'closed streams and HEAD leave no subscriber');
}


# --- errors, before anything streams ------------------------------------

{
    my $subscribed = metric('whatsapp_sse_subscribers');

    sub is_refused {
        my ($res, $status, $code, $message, $name) = @_;
        is($res->{status}, $status, "$name: $status") or diag($res->{raw});
        is($res->{headers}{'content-type'}, 'application/json',
           "$name: application/json, not a stream");
        my $doc = eval { $json->decode($res->{body}) } // {};
        is($doc->{error}{code}, $code, "$name: error code $code")
            or diag($res->{body});
        like($doc->{error}{message} // '', $message, "$name: message")
            if defined $message;
    }

    sub get {
        my ($path, $h, $method) = @_;
        return http_request($nginx->port, $method // 'GET', $path, $h // {},
                            undef, timeout => 5);
    }

    my $res = get('/events');
    is_refused($res, 401, 'unauthorized', qr/^authentication required$/,
               'no token');
    is($res->{headers}{'www-authenticate'}, 'Bearer realm="whatsapp"',
       'no token: a plain challenge');

    my $now = time;
    my %bad = (
        'expired token' => [ token(phone_number_ids => '*',
                                   exp => $now - 100), 'token expired' ],
        'not yet valid' => [ token(phone_number_ids => '*',
                                   nbf => $now + 100), 'token not yet valid' ],
        'wrong secret' => [ WaTest::Jwt::token(
                                alg => 'HS256', key => 'y' x 40,
                                claims => { sub => 'ag1', exp => $now + 60,
                                            phone_number_ids => '*' }),
                            'invalid token signature' ],
        'alg none' => [ WaTest::Jwt::token(
                            alg => 'none',
                            claims => { sub => 'ag1', exp => $now + 60,
                                        phone_number_ids => '*' }),
                        'unexpected token algorithm' ],
        'not a JWT' => [ 'abc.def', 'malformed token' ],
    );
    for my $name (sort keys %bad) {
        my ($t, $why) = @{ $bad{$name} };
        $res = get('/events', { Authorization => "Bearer $t" });
        is_refused($res, 401, 'unauthorized', qr/^\Q$why\E$/, $name);
        is($res->{headers}{'www-authenticate'},
           qq{Bearer realm="whatsapp", error="invalid_token", }
           . qq{error_description="$why"}, "$name: WWW-Authenticate");
    }
    $res = get('/events?access_token=' . $bad{'expired token'}[0]);
    is_refused($res, 401, 'unauthorized', qr/^token expired$/,
               'expired token in ?access_token=');
    $res = get('/events', { Cookie => 'wa_token=' . $bad{'wrong secret'}[0] });
    is_refused($res, 401, 'unauthorized', undef, 'bad token in the cookie');
    $res = get('/events', undef, 'HEAD');
    is($res->{status}, 401, 'HEAD without a token: 401');

    my $t1 = token(phone_number_ids => ['p1']);
    $res = get('/events?phone_number_id=p2', { Authorization => "Bearer $t1" });
    is_refused($res, 403, 'forbidden', qr/not in your scope/,
               'phone_number_id outside the scope');
    $res = get('/hdr?phone_number_id=p3', { 'X-Agent' => 'ag1',
                                            'X-Phones' => 'p1,p2' });
    is_refused($res, 403, 'forbidden', qr/not in your scope/,
               'scope from variables: phone_number_id outside it');
    is_refused(get('/hdr', { 'X-Phones' => '*' }), 403, 'forbidden',
               qr/^no valid agent in the scope$/, 'scope: no agent');
    is_refused(get('/hdr', { 'X-Agent' => 'ag1' }), 403, 'forbidden',
               qr/^no valid phone numbers in the scope$/, 'scope: no phones');
    is_refused(get('/hdr', { 'X-Agent' => 'ag1', 'X-Phones' => 'p;drop' }),
               403, 'forbidden', undef, 'scope: a bad phone id');

    my %invalid = (
        '/open?phone_number_id=a%20b' => qr/^invalid phone_number_id$/,
        '/open?phone_number_id=a/b' => qr/^invalid phone_number_id$/,
        '/open?phone_number_id=' . ('1' x 65) => qr/^invalid phone_number_id$/,
        '/open?conversation_id=x%2Fy' => qr/^invalid conversation_id$/,
        '/open?conversation_id=%27or%201=1' => qr/^invalid conversation_id$/,
        '/open?conversation_id=' . ('c' x 2000) => qr/^invalid conversation_id$/,
        '/open?events=message.new,,x' => qr/^invalid events/,
        '/open?events=message.new,' => qr/^invalid events/,
        '/open?events=a%20b' => qr/^invalid events/,
        '/open?events=' . join(',', ('message.new') x 17)
            => qr/^invalid events: up to 16 of message\.new, /,
        # a name no update has: refused, not a stream that stays silent
        '/open?events=bogus.event' => qr/^invalid events/,
        '/open?events=message.status,messages.new' => qr/^invalid events/,
        '/open?events=message_new' => qr/^invalid events/,
        '/open?last_event_id=abc' => qr/^invalid Last-Event-ID$/,
        '/open?last_event_id=1-2-3' => qr/^invalid Last-Event-ID$/,
    );
    for my $path (sort keys %invalid) {
        is_refused(get($path), 400, 'bad_request', $invalid{$path},
                   substr($path, 0, 60));
    }
    for my $lei ('abc', '1-', '-1', '1-x', '99999999999999999999-0',
                 '1.5-0') {
        is_refused(get('/open', { 'Last-Event-ID' => $lei }), 400,
                   'bad_request', qr/^invalid Last-Event-ID$/,
                   "Last-Event-ID '$lei'");
    }

    for my $m (qw(POST PUT DELETE OPTIONS)) {
        $res = get('/open', undef, $m);
        is_refused($res, 405, 'method_not_allowed', undef, $m);
        is($res->{headers}{allow}, 'GET, HEAD', "$m: Allow");
    }
    $res = get('/events', undef, 'POST');
    is($res->{status}, 405, 'POST without a token: 405 (the method first)');

    # valid forms of the same parameters stream
    for my $path ('/open?events=' . join(',', ('message.new') x 10,
                                          qw(message.echo message.status
                                             conversation.update
                                             template.status phone.health
                                             reset)),
                  '/open?phone_number_id=106540352242922'
                  . '&conversation_id=1b4e28ba-2fa1-11d2-883f-0016d3cca427',
                  '/open?last_event_id=0-0', '/open?last_event_id=0') {
        my $c = stream($path);
        is($c->status, 200, "$path: 200");
        $c->close;
    }

    # the scope's numbers as the API gets them ('{p1,"NULL"}'): a number
    # named NULL is quoted for PostgreSQL, and is still a number here
    my $c0 = stream('/hdr', headers => { 'X-Agent' => 'ag1',
                                         'X-Phones' => 'p1,NULL' });
    is($c0->status, 200, 'a scope with a number named NULL: 200')
        or diag($c0->body);
    if ($c0->status == 200) {
        my @u = map { publish('message.new', qq({"phone_number_id":"$_"}),
                              phone => $_) } qw(p2 NULL p1);
        ok($c0->wait_frames(2, 5), 'a number named NULL: its updates');
        is_deeply(got($c0->frames), got(@u[1, 2]),
                  'a number named NULL: NULL\'s and p1\'s');
    }
    $c0->close;

    # a token of no number at all: a stream that sees nothing
    my $none = token(phone_number_ids => []);
    my $c = stream('/events', headers => { Authorization => "Bearer $none" });
    is($c->status, 200, 'a scope of no numbers: 200 (as the API: empty)')
        or diag($c->body);
    if ($c->status == 200) {
        publish('message.new', '{"phone_number_id":"p1"}', phone => 'p1');
        publish('template.status', '{"template":"t"}');
        my $all = stream('/open');
        my $u = publish('message.new', '{"phone_number_id":"p2"}',
                        phone => 'p2');
        $all->wait_frames(1, 5);
        $c->pump(0.3);
        is(scalar $c->frames, 0, 'a scope of no numbers sees nothing');
        $all->close;
    }
    $c->close;

    ok(wait_until(sub { (metric('whatsapp_sse_subscribers') // -1)
                        == $subscribed }, 5),
       'no refused request became a subscriber');
}


# --- heartbeats ------------------------------------------------------------

{
    my $c = stream('/hb');
    my $t0 = time;
    ok($c->wait(sub { grep { $_ eq 'heartbeat' } $_[0]->comments }, 4),
       'a heartbeat comes on an idle stream');
    my $first = time - $t0;
    cmp_ok($first, '>=', 0.9, 'not before whatsapp_sse_heartbeat 1s');
    cmp_ok($first, '<', 3, '... within the next tick or so');
    ok($c->wait(sub { (grep { $_ eq 'heartbeat' } $_[0]->comments) >= 2 }, 3),
       'and again a second later');
    like($c->body, qr/\A\Q$HELLO\E: heartbeat\n\n: heartbeat\n\n\z/,
         'the heartbeat bytes');

    # output keeps the stream alive: no heartbeat while updates flow
    publish('note', 'x');
    $c->wait_frames(1, 5);
    my $beats = grep { $_ eq 'heartbeat' } $c->comments;
    for (1 .. 10) {
        publish('note', 'x');
        $c->wait_frames(1 + $_, 5);
        sleep 0.25;
    }
    is(scalar(grep { $_ eq 'heartbeat' } $c->comments), $beats,
       'no heartbeat while updates are written');

    my $d = stream('/open');
    $d->pump(2.2);
    is_deeply([ $d->comments ], [ 'whatsapp events' ],
              'the default heartbeat (15s) is not every second');
    $c->close;
    $d->close;
}


# --- many clients, scopes and filters, over both workers -------------------

my @specs = (
    { name => 'all numbers', claims => { phone_number_ids => '*' } },
    { name => 'all numbers (the other worker)',
      claims => { phone_number_ids => '*' }, via => 'cookie' },
    { name => 'events=message.new', claims => { phone_number_ids => '*' },
      query => { events => 'message.new' } },
    { name => 'events=message.new,conversation.update',
      claims => { phone_number_ids => '*' },
      query => { events => 'message.new,conversation.update' } },
    { name => 'all numbers, phone_number_id=p1',
      claims => { phone_number_ids => '*' },
      query => { phone_number_id => 'p1' }, via => 'access_token' },
    { name => 'all numbers, conversation_id=conv-p1-1',
      claims => { phone_number_ids => '*' },
      query => { conversation_id => 'conv-p1-1' } },
    { name => 'scope p1', claims => { phone_number_ids => ['p1'] } },
    { name => 'scope p2, p3', claims => { phone_number_ids => [qw(p2 p3)] } },
    { name => 'scope p2, p3, phone_number_id=p3',
      claims => { phone_number_ids => [qw(p2 p3)] },
      query => { phone_number_id => 'p3' } },
    { name => 'scope p1, events=message.status',
      claims => { phone_number_ids => ['p1'] },
      query => { events => 'message.status' }, via => 'cookie' },
    { name => 'assigned-only ag1', claims => {
          phone_number_ids => '*', assigned_only => JSON::PP::true } },
    { name => 'assigned-only ag2, scope p1', claims => {
          sub => 'ag2', phone_number_ids => ['p1'],
          assigned_only => JSON::PP::true } },
    { name => 'assigned-only ag3, events=conversation.update', claims => {
          sub => 'ag3', phone_number_ids => '*',
          assigned_only => JSON::PP::true },
      query => { events => 'conversation.update' } },
    { name => 'scope p3, conversation_id=conv-p3-2',
      claims => { phone_number_ids => ['p3'] },
      query => { conversation_id => 'conv-p3-2' } },
    { name => 'events=template.status', claims => { phone_number_ids => '*' },
      query => { events => 'template.status' } },
    { name => 'phone_number_id=p2, events=message.new,message.status',
      claims => { phone_number_ids => '*' },
      query => { phone_number_id => 'p2',
                 events => 'message.new,message.status' } },
    { name => 'variables: ag1, "p1, p2"',
      hdr => { 'X-Agent' => 'ag1', 'X-Phones' => 'p1, p2' } },
    { name => 'variables: ag2, *, assigned-only',
      hdr => { 'X-Agent' => 'ag2', 'X-Phones' => '*', 'X-Assigned' => 'yes' } },
    { name => 'scope p9 (no updates)',
      claims => { phone_number_ids => ['p9'] } },
    { name => 'scope p1, conversation_id=conv-p2-1 (another number\'s)',
      claims => { phone_number_ids => ['p1'] },
      query => { conversation_id => 'conv-p2-1' } },
);

WaTest::Sse::learn($_) for @specs;     # what the rules need of each

# connect(spec, worker pid, extra headers, extra query) -> client
sub connect_spec {
    my ($s, $pid, $headers, $extra) = @_;
    my %q = (%{ $s->{query} // {} }, %{ $extra // {} });
    my %h = (%{ $s->{hdr} // {} }, %{ $headers // {} });
    my $path = $s->{hdr} ? '/hdr' : '/events';
    if ($s->{claims}) {
        my $t = $s->{token} //= token(%{ $s->{claims} });
        my $via = $s->{via} // 'header';
        if ($via eq 'cookie') { $h{Cookie} = "lang=de; wa_token=$t" }
        elsif ($via eq 'access_token') { $q{access_token} = $t }
        else { $h{Authorization} = "Bearer $t" }
    }
    $path .= '?' . join '&', map { "$_=$q{$_}" } sort keys %q if %q;
    return stream_on($pid, $path, headers => \%h);
}

{
    my $relayed0 = metric('whatsapp_sse_events_relayed_total');
    my $replays0 = metric('whatsapp_sse_replays_total');
    my $resets0 = metric('whatsapp_sse_resets_total');

    my @clients;
    for my $i (0 .. $#specs) {
        my $c = connect_spec($specs[$i], $workers[ $i % 2 ]);
        is($c->status, 200, "$specs[$i]{name}: 200") or diag($c->body);
        push @clients, [ $c ];         # every connection of this spec
    }
    my %used;
    $used{ $_->[0]->worker }++ for @clients;
    is_deeply([ sort keys %used ], \@workers,
              'the streams are spread over both worker processes')
        or diag(explain \%used);
    ok(wait_until(sub { (metric('whatsapp_sse_subscribers') // 0)
                        == @specs }, 5),
       'whatsapp_sse_subscribers counts them') or
        diag(metric('whatsapp_sse_subscribers'));

    my $first = @published;
    random_update($_) for 1 .. 120;                     # phase A
    my @a = @published[ $first .. $#published ];

    my $all = sub { [ map { @$_ } map { [ map { $_->frames } @$_ ] } @_ ] };
    my $complete = sub {
        my ($upto) = @_;
        return sub {
            for my $i (0 .. $#specs) {
                my $want = grep { WaTest::Sse::sees($specs[$i], $_) }
                           @$upto;
                my $have = map { $_->frames } @{ $clients[$i] };
                return 0 if $have < $want;
            }
            return 1;
        };
    };
    my @open = map { @$_ } @clients;
    ok(WaTest::Sse::wait_all(\@open, $complete->(\@a), 20),
       'phase A: every client got as many updates as it should');

    # phase B: a third of the clients are away while it is published
    my @away;
    for my $i (0 .. $#specs) {
        push @away, $i
            if $i % 3 == 2 && grep { WaTest::Sse::sees($specs[$i], $_) } @a;
    }
    my %last;
    for my $i (@away) {
        my @f = $clients[$i][0]->frames;
        $last{$i} = $f[-1]{id};
        $clients[$i][0]->close;
    }
    ok(wait_until(sub { (metric('whatsapp_sse_subscribers') // 0)
                        == @specs - @away }, 5),
       scalar(@away) . ' clients went away');
    $first = @published;
    random_update($_) for 121 .. 180;
    my @b = @published[ $first .. $#published ];

    # the ones still there have both relays past phase B
    ok(WaTest::Sse::wait_all([ map { $clients[$_][0] } 0, 1 ], sub {
           !grep { ($_->last_id // '') ne $b[-1]{id} }
                 map { $clients[$_][0] } 0, 1 }, 20),
       'phase B relayed by both workers');

    # back with the last id each saw: header, or ?last_event_id=
    for my $k (0 .. $#away) {
        my $i = $away[$k];
        my ($h, $q) = $k % 2 ? ({}, { last_event_id => $last{$i} })
                             : ({ 'Last-Event-ID' => $last{$i} }, {});
        # (no choosing the worker: each try would be a replay)
        my $c = connect_spec($specs[$i], undef, $h, $q);
        is($c->status, 200, "$specs[$i]{name}: reconnected");
        push @{ $clients[$i] }, $c;
    }

    random_update($_) for 181 .. 240;                   # phase C
    my @abc = (@a, @b, @published[ $first + @b .. $#published ]);
    @open = grep { !$_->eof } map { @$_ } @clients;
    ok(WaTest::Sse::wait_all(\@open, $complete->(\@abc), 20),
       'phase C: every client got as many updates as it should');
    WaTest::Sse::wait_all(\@open, sub { 0 }, 0.5);     # anything extra

    for my $i (0 .. $#specs) {
        my @want = grep { WaTest::Sse::sees($specs[$i], $_) } @abc;
        my @have = map { $_->frames } @{ $clients[$i] };
        my $how = @{ $clients[$i] } > 1 ? ', across a reconnect' : '';
        is_deeply(got(@have), got(@want),
                  "$specs[$i]{name}: exactly its " . scalar(@want)
                  . " updates, in order$how");
    }
    my $total = 0;
    for my $s (@specs) { $total += grep { WaTest::Sse::sees($s, $_) } @abc }
    my ($p9) = grep { $_->{name} =~ /p9/ } @specs;
    ok($total > 600 && !grep({ WaTest::Sse::sees($p9, $_) } @abc),
       "the scopes differ ($total updates delivered in all)");
    is(metric('whatsapp_sse_replays_total') - $replays0, scalar @away,
       'each reconnect was a replay');
    is(metric('whatsapp_sse_resets_total') - $resets0, 0, 'and none a reset');
    # queued live: all delivered but the phase B updates replayed
    my %in_b = map { ($_->{id} => 1) } @b;
    my $replayed = grep { $in_b{ $_->{id} } }
                   map { $clients[$_][1]->frames } @away;
    is(metric('whatsapp_sse_events_relayed_total') - $relayed0,
       $total - $replayed,
       'whatsapp_sse_events_relayed_total: one per update and stream');
    $_->close for map { @$_ } @clients;
    ok(wait_until(sub { (metric('whatsapp_sse_subscribers') // -1) == 0 },
                  5), 'all gone: whatsapp_sse_subscribers 0');
}


# --- event: reset ------------------------------------------------------------

{
    my $resets0 = metric('whatsapp_sse_resets_total');
    my $replays0 = metric('whatsapp_sse_replays_total');

    # watchers on both workers tell when both relays have read everything
    my @watch = map { stream_on($_, '/open') } @workers;
    my $synced = sub {
        my $last = last_id();
        return WaTest::Sse::wait_all(\@watch, sub {
            !grep { ($_->last_id // '') ne $last } @watch }, 10);
    };
    my $u0 = random_update(1000);
    ok($synced->(), 'both relays at the end of the stream');

    my $reset = sub {
        my ($c, $reason, $name) = @_;
        ok($c->wait_frames(1, 5), "$name: a frame") or return;
        my $f = ($c->frames)[0];
        is_deeply([ @$f{qw(id event data)} ],
                  [ last_id(), 'reset', qq({"reason":"$reason"}) ],
                  "$name: event: reset, $reason, at the current id");
        my $u = publish('message.new', '{"phone_number_id":"p1"}',
                        phone => 'p1');
        ok($c->wait_frames(2, 5), "$name: then live updates");
        is(($c->frames)[1]{id}, $u->{id}, "$name: the next one");
        $synced->();
        return $f->{id};
    };

    # an id that never was in the stream
    my $c = stream('/open', headers => { 'Last-Event-ID' => '1-0' });
    my $at = $reset->($c, 'last_event_id_expired', 'Last-Event-ID 1-0');
    like($c->body, qr/\A\Q$HELLO\Eid: \Q$at\E\nevent: reset\n/,
         'the hello first, then the reset');

    # resuming from the reset's id is a plain resume
    my $d = stream('/open', headers => { 'Last-Event-ID' => $at });
    ok($d->wait_frames(1, 5), 'resuming from the reset id');
    is(($d->frames)[0]{id}, ($c->frames)[1]{id},
       'resuming from the reset id: what came after it');
    $_->close for $c, $d;

    # a browser reconnecting keeps the URL and sends the header: the
    # header is where it is
    $d = stream('/open?last_event_id=1-0', headers => { 'Last-Event-ID' => $at });
    ok($d->wait_frames(1, 5), 'Last-Event-ID header and ?last_event_id=');
    is(($d->frames)[0]{id}, ($c->frames)[1]{id},
       'the header comes before ?last_event_id=');
    $d->close;

    # an id trimmed away
    my $old = $u0->{id};
    random_update(1000 + $_) for 1 .. 20;
    $synced->();
    $redis->cmd('XTRIM', 'wa:updates', 'MAXLEN', 10);
    $c = stream('/open', headers => { 'Last-Event-ID' => $old });
    $reset->($c, 'last_event_id_expired', 'a trimmed Last-Event-ID');
    $c->close;

    # whatsapp_sse_replay 5: five missed are replayed, six are too many
    my $from = last_id();
    my @five = map { random_update(1100 + $_) } 1 .. 5;
    $synced->();
    $c = stream('/small', headers => { 'Last-Event-ID' => $from });
    ok($c->wait_frames(5, 5), 'replay 5, 5 missed: replayed');
    my $n = publish('message.new', '{"phone_number_id":"p2"}', phone => 'p2');
    ok($c->wait_frames(6, 5), 'replay 5, 5 missed: then live');
    is_deeply(got($c->frames), got(@five, $n),
              'replay 5, 5 missed: exactly those, then the live one');
    $c->close;
    $synced->();

    $from = last_id();
    random_update(1200 + $_) for 1 .. 6;
    $synced->();
    $c = stream('/small', headers => { 'Last-Event-ID' => $from });
    $reset->($c, 'too_many_missed', 'replay 5, 6 missed');
    $c->close;

    # entries outside the client's filter count too
    $from = last_id();
    my @p2 = map { publish('message.new', qq({"phone_number_id":"p2","n":$_}),
                           phone => 'p2') } 1 .. 5;
    my $p1 = publish('message.new', '{"phone_number_id":"p1"}', phone => 'p1');
    $synced->();
    $c = stream('/small?phone_number_id=p1',
                headers => { 'Last-Event-ID' => $p2[0]{id} });
    ok($c->wait_frames(1, 5), 'replay 5, 5 missed, 1 in the filter: replayed');
    $c->pump(0.3);
    is_deeply(got($c->frames), got($p1), '... only that one');
    $c->close;
    $c = stream('/small?phone_number_id=p1',
                headers => { 'Last-Event-ID' => $from });
    $reset->($c, 'too_many_missed', 'replay 5, 6 missed, 1 in the filter');
    $c->close;

    # nothing missed: no replay, no reset
    my $replays1 = metric('whatsapp_sse_replays_total');
    $c = stream('/small', headers => { 'Last-Event-ID' => last_id() });
    $n = publish('message.new', '{"phone_number_id":"p3"}', phone => 'p3');
    ok($c->wait_frames(1, 5), 'Last-Event-ID at the end: live');
    is_deeply(got($c->frames), got($n), 'Last-Event-ID at the end: no reset');
    is(metric('whatsapp_sse_replays_total'), $replays1,
       'Last-Event-ID at the end: no replay counted');
    $c->close;

    is(metric('whatsapp_sse_resets_total') - $resets0, 4,
       'whatsapp_sse_resets_total counted the 4 resets');
    # (the two resumes from the reset id, 5 missed, 1 in the filter)
    is(metric('whatsapp_sse_replays_total') - $replays0, 4,
       'whatsapp_sse_replays_total counted the 4 replays');

    # the watchers saw every update, in order
    ok($synced->(), 'the watchers are at the end of the stream');
    for my $w (@watch) {
        my ($from) = grep { $published[$_]{id} eq $u0->{id} }
                     0 .. $#published;
        my @want = @published[ $from .. $#published ];
        is_deeply(got($w->frames), got(@want),
                  'a watcher on worker ' . $w->worker . ': every update');
    }
    $_->close for @watch;
}


# --- HTTP/2 ---------------------------------------------------------------------

SKIP: {
    my $help = `curl --help all 2>&1`;
    skip 'curl cannot do HTTP/2 with prior knowledge', 9
        unless $help =~ /--http2-prior-knowledge/
               && `curl -V 2>&1` =~ /^Features:.*\bHTTP2\b/m;
    my $before = metric('whatsapp_sse_subscribers');
    my $prev = last_id();
    my $u = publish('message.new', '{"phone_number_id":"p1","h2":1}',
                    phone => 'p1');
    # (curl -Z cannot multiplex over h2c prior knowledge: two connections)
    my @out = map { "$dir/h2-$_.out" } 1 .. 2;
    my @curl = map {
        WaTest::Process::spawn(
            argv => [ 'curl', '-sS', '-N', '--http2-prior-knowledge', '-i',
                      '-o', $out[$_], "http://127.0.0.1:$h2port/open",
                      $_ ? ('-H', "Last-Event-ID: $prev") : () ],
            stdout => "$dir/h2-$_.log")
    } 0 .. 1;
    ok(wait_until(sub { (metric('whatsapp_sse_subscribers') // 0)
                        == $before + 2 }, 5),
       'HTTP/2: two streams subscribed')
        or diag(map { slurp("$dir/h2-$_.log") // '' } 0 .. 1);
    ok(wait_until(sub { (slurp($out[1]) // '') =~ /\Q$u->{id}\E/ }, 5),
       'HTTP/2: the missed update replayed');
    my $v = publish('message.new', "{\"phone_number_id\":\"p1\",\n\"h2\":2}",
                    phone => 'p1');
    ok(wait_until(sub { !grep { (slurp($_) // '') !~ /\Q$v->{id}\E/ } @out },
                  5), 'HTTP/2: a live update on both streams');
    my $frame = "id: $v->{id}\nevent: message.new\n"
              . "data: {\"phone_number_id\":\"p1\",\ndata: \"h2\":2}\n\n";
    my $o = slurp($out[0]) // '';
    like($o, qr{\AHTTP/2 200 ?\r\n}, 'HTTP/2: 200');
    like($o, qr{^content-type: text/event-stream\r$}m,
         'HTTP/2: text/event-stream');
    like($o, qr{^cache-control: no-cache\r$}m, 'HTTP/2: no-cache');
    like($o, qr{\r\n\r\n\Q$HELLO$frame\E\z},
         'HTTP/2: the hello and the frame, byte for byte');
    like(slurp($out[1]) // '',
         qr{\r\n\r\n\Q$HELLO\Eid: \Q$u->{id}\E\n[^\n]+\n[^\n]+\n\n\Q$frame\E\z},
         'HTTP/2: replay, then live');
    WaTest::Process::stop($_, 'TERM', 5) for @curl;
    ok(wait_until(sub { (metric('whatsapp_sse_subscribers') // -1)
                        == $before }, 5),
       'HTTP/2: the connections closed, the streams gone');
}


# --- metrics, logs ---------------------------------------------------------

{
    my $s = http_request($nginx->port, GET => '/status')->{body};
    for my $m (qw(whatsapp_sse_subscribers whatsapp_sse_events_relayed_total
                  whatsapp_sse_slow_clients_total whatsapp_sse_replays_total
                  whatsapp_sse_resets_total)) {
        like($s, qr/^# TYPE \Q$m\E (gauge|counter)\n\Q$m\E \d+$/m,
             "whatsapp_status prints $m");
    }
    is(metric('whatsapp_sse_slow_clients_total'), 0, 'no slow client here');
    cmp_ok(metric('whatsapp_sse_events_relayed_total'), '>', 1000,
           'updates relayed are counted');
    like(metric('whatsapp_redis_connected'), qr/^6$/,
         'whatsapp_redis_connected: 2 workers x (commands, relay, replays)');
}

$nginx->stop;
$nginx->check_logs('sse');


# --- nginx -t ---------------------------------------------------------------

my $rd = 'whatsapp_redis 127.0.0.1:6379;';
WaTest::Nginx->check_cases(
    { name => 'events without whatsapp_auth', http => $rd,
      server => 'location /ev { whatsapp_events; }',
      error => qr/"whatsapp_events" in \S+nginx\.conf:\d+ needs whatsapp_auth: add "whatsapp_auth jwt KEYFILE;", "whatsapp_auth scope \$agent \$phones;" or, to serve it unauthenticated, "whatsapp_auth off;"/ },
    { name => 'events without whatsapp_redis',
      server => 'location /ev { whatsapp_events; whatsapp_auth off; }',
      error => qr/"whatsapp_events" in \S+nginx\.conf:\d+ needs whatsapp_redis in the http or server block/ },
    { name => 'whatsapp_sse_heartbeat 10ms', http => $rd,
      server => 'location /ev { whatsapp_events; whatsapp_auth off;'
              . ' whatsapp_sse_heartbeat 10ms; }',
      error => qr/value must be between 1000 and 3600000 in \S+nginx\.conf:\d+/ },
    { name => 'whatsapp_sse_heartbeat 2h', http => $rd,
      server => 'location /ev { whatsapp_events; whatsapp_auth off;'
              . ' whatsapp_sse_heartbeat 2h; }',
      error => qr/value must be between 1000 and 3600000/ },
    { name => 'whatsapp_sse_heartbeat not a time', http => $rd,
      server => 'location /ev { whatsapp_events; whatsapp_auth off;'
              . ' whatsapp_sse_heartbeat soon; }',
      error => qr/"whatsapp_sse_heartbeat" directive invalid value/ },
    { name => 'whatsapp_sse_buffer 1k', http => $rd,
      server => 'location /ev { whatsapp_events; whatsapp_auth off;'
              . ' whatsapp_sse_buffer 1k; }',
      error => qr/value must be between 4096 and 1073741824 in \S+nginx\.conf:\d+/ },
    { name => 'whatsapp_sse_replay 100001', http => $rd,
      server => 'location /ev { whatsapp_events; whatsapp_auth off;'
              . ' whatsapp_sse_replay 100001; }',
      error => qr/value must be between 0 and 100000/ },
    { name => 'whatsapp_sse_replay -1', http => $rd,
      server => 'location /ev { whatsapp_events; whatsapp_auth off;'
              . ' whatsapp_sse_replay -1; }',
      error => qr/"whatsapp_sse_replay" directive invalid number/ },
    { name => 'whatsapp_events twice', http => $rd,
      server => 'location /ev { whatsapp_events; whatsapp_events;'
              . ' whatsapp_auth off; }',
      error => qr/"whatsapp_events" directive is duplicate/ },
    { name => 'whatsapp_events with an argument', http => $rd,
      server => 'location /ev { whatsapp_events on; whatsapp_auth off; }',
      error => qr/invalid number of arguments in "whatsapp_events"/ },
    { name => 'whatsapp_events in server{}', http => $rd,
      server => 'whatsapp_events; whatsapp_auth off;',
      error => qr/"whatsapp_events" directive is not allowed here/ },
    { name => 'the limits and inherited auth and redis', ok => 1,
      http => "$rd whatsapp_auth jwt $hs_file; whatsapp_sse_heartbeat 1s;"
            . ' whatsapp_sse_buffer 4k; whatsapp_sse_replay 0;',
      server => 'location = /ev { whatsapp_events; }'
              . ' location /ev2 { whatsapp_events;'
              . ' whatsapp_sse_heartbeat 1h; whatsapp_sse_buffer 1024m;'
              . ' whatsapp_sse_replay 100000; }' },
    { name => 'scope from variables', ok => 1, http => $rd,
      server => 'location /ev { whatsapp_events;'
              . ' whatsapp_auth scope $remote_user $http_x_phones; }' },
);

done_testing;
