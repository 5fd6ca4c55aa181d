# whatsapp_events over HTTP/2: many streams multiplexed on one connection,
# as a browser opens its EventSources.  Each stream gets exactly its
# updates, in order; refused requests, replays, a cancelled stream and a
# stalled one (cut off at whatsapp_sse_buffer) touch no other stream of
# the connection; heartbeats; a graceful quit ends every stream.
use strict;
use warnings;
use File::Temp qw(tempdir);
use JSON::PP;
use Test::More;
use Time::HiRes qw(time sleep);
use WaTest;
use WaTest::Jwt;
use WaTest::Sse;
use WaTest::SseH2;

my $json = JSON::PP->new->canonical;
my $HELLO = $WaTest::Sse::HELLO;

my $dir = tempdir('wa-h2-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0755, $dir;
my $hs_file = WaTest::Jwt::hs256_key_file($dir);

sub token { WaTest::Jwt::hs256_token(@_) }

my $redis = WaTest::Redis->start;
my $h2port = free_port();
my $open = 'whatsapp_events; whatsapp_auth off;';
my $nginx = WaTest::Nginx->start(
    http   => "whatsapp_redis " . $redis->addr . ";"
            . " server { listen 127.0.0.1:$h2port http2;"
            . "   location = /events { whatsapp_events;"
            . "     whatsapp_auth jwt $hs_file; }"
            . '   location = /hdr { whatsapp_events;'
            . '     whatsapp_auth scope $http_x_agent $http_x_phones'
            . '                         $http_x_assigned; }'
            . "   location = /open { $open }"
            . "   location = /hb { $open whatsapp_sse_heartbeat 1s; }"
            . "   location = /tight { $open whatsapp_sse_buffer 16k; } }",
    server => 'location = /status { whatsapp_status; }');
ok(wait_until(sub { $nginx->count_log(qr/relaying wa:updates from/) >= 2 },
              10), 'both workers relay wa:updates')
    or diag($nginx->log_tail);

sub metric { $nginx->metric($_[0]) }

my @published;

sub publish {
    my $u = WaTest::Sse::publish($redis, @_);
    push @published, $u;
    return $u;
}

sub random_update { WaTest::Sse::random_update($_[0], \&publish) }

sub got { WaTest::Sse::got(@_) }

srand 22;


# --- one connection, many streams -------------------------------------------

my @specs = (
    { name => 'jwt, every number', claims => { phone_number_ids => '*' } },
    { name => 'jwt, scope p1', claims => { phone_number_ids => ['p1'] } },
    { name => 'jwt, assigned-only ag2', claims => {
          sub => 'ag2', phone_number_ids => '*',
          assigned_only => JSON::PP::true } },
    { name => 'jwt, events=message.status',
      claims => { phone_number_ids => '*' },
      query => { events => 'message.status' } },
    { name => 'jwt, scope p2 p3, conversation_id=conv-p3-1',
      claims => { phone_number_ids => [qw(p2 p3)] },
      query => { conversation_id => 'conv-p3-1' } },
    { name => 'variables: ag1, "p1, p2", phone_number_id=p2',
      hdr => { 'X-Agent' => 'ag1', 'X-Phones' => 'p1, p2' },
      query => { phone_number_id => 'p2' } },
    { name => 'variables: ag3, *, assigned-only',
      hdr => { 'X-Agent' => 'ag3', 'X-Phones' => '*',
               'X-Assigned' => 'yes' } },
    { name => 'unauthenticated location, every update', open => 1 },
);
WaTest::Sse::learn($_) for grep { !$_->{open} } @specs;

sub path_of {
    my ($s, %extra) = @_;
    my %q = (%{ $s->{query} // {} }, %extra);
    my $path = $s->{open} ? '/open' : $s->{hdr} ? '/hdr' : '/events';
    return %q ? "$path?" . join '&', map { "$_=$q{$_}" } sort keys %q
              : $path;
}

sub headers_of {
    my ($s) = @_;
    my %h = %{ $s->{hdr} // {} };
    $h{authorization} = 'Bearer ' . ($s->{token} //= token(%{ $s->{claims} }))
        if $s->{claims};
    return \%h;
}

sub sees { $_[0]{open} || WaTest::Sse::sees(@_) }

my $h2 = WaTest::SseH2->connect($h2port);
my $before = metric('whatsapp_sse_subscribers');
my @streams = map { $h2->stream(path_of($_), headers => headers_of($_)) }
              @specs;
ok($h2->wait(sub { !grep { !defined $_->status || $_->body eq '' } @streams },
             5), 'every stream answered, on one connection')
    or diag(explain [ map { $_->status } @streams ]);
is_deeply([ map { $_->status } @streams ], [ (200) x @specs ],
          'every stream: 200');
is_deeply([ map { $_->header('content-type') } @streams ],
          [ ('text/event-stream') x @specs ], 'every stream: an event stream');
is($streams[0]->header('cache-control'), 'no-cache', 'Cache-Control: no-cache');
is($streams[0]->header('x-accel-buffering'), 'no', 'X-Accel-Buffering: no');
is_deeply([ map { $_->body } @streams ], [ ($HELLO) x @specs ],
          'every stream begins with the hello');
ok(wait_until(sub { (metric('whatsapp_sse_subscribers') // 0)
                    == $before + @specs }, 5),
   'whatsapp_sse_subscribers counts each stream');

# refused requests on the same connection: answered, the others untouched
my %refused = (
    'bad token'                 => [ '/events', { authorization => 'Bearer x.y' },
                                     401, 'unauthorized' ],
    'number outside the scope'  => [ '/events?phone_number_id=p2',
                                     headers_of($specs[1]), 403, 'forbidden' ],
    'no agent in the scope'     => [ '/hdr', { 'X-Phones' => '*' },
                                     403, 'forbidden' ],
    'an invalid filter'         => [ '/open?conversation_id=%27x',
                                     {}, 400, 'bad_request' ],
);
my %r = map { ($_ => $h2->stream($refused{$_}[0],
                                 headers => $refused{$_}[1])) } keys %refused;
ok($h2->wait(sub { !grep { !$_->ended } values %r }, 5),
   'the refused streams end') or diag(explain { map { ($_ => $r{$_}->status) } keys %r });
for my $name (sort keys %refused) {
    my ($status, $code) = @{ $refused{$name} }[ 2, 3 ];
    my $doc = eval { $json->decode($r{$name}->body) } // {};
    is_deeply([ $r{$name}->status, $r{$name}->header('content-type'),
                $doc->{error}{code} ],
              [ $status, 'application/json', $code ],
              "$name: $status $code, as JSON");
}
ok(!$h2->eof, 'the connection stays open after the refusals');

my $first = @published;
random_update($_) for 1 .. 150;
my @sent = @published[ $first .. $#published ];
my @want = map { my $s = $_; [ grep { sees($s, $_) } @sent ] } @specs;
ok($h2->wait(sub {
       !grep { $streams[$_]->frames < @{ $want[$_] } } 0 .. $#specs }, 10),
   'the updates arrive on every stream');
$h2->pump(0.3);                      # anything beyond would show now
for my $i (0 .. $#specs) {
    is_deeply(got($streams[$i]->frames), got(@{ $want[$i] }),
              "$specs[$i]{name}: exactly its updates, in order");
}
cmp_ok(scalar @{ $want[2] }, '>', 5, 'assigned-only got some, not none');
cmp_ok(scalar @{ $want[2] }, '<', 100, 'assigned-only got not all');


# --- a replay on a connection that streams ---------------------------------

{
    my $s = $specs[1];                          # scope p1
    my $from = $sent[49]{id};
    my $late = $h2->stream(path_of($s),
                           headers => { %{ headers_of($s) },
                                        'last-event-id' => $from });
    ok($h2->wait(sub { $late->frames >= grep { sees($s, $_) }
                                        @sent[ 50 .. $#sent ] }, 5),
       'Last-Event-ID: the replay arrives');
    my @more = map { random_update($_) } 151 .. 170;
    ok($h2->wait(sub { $streams[0]->frames == @{ $want[0] } + @more }, 5),
       'live updates after the replay');
    $h2->pump(0.3);
    is_deeply(got($late->frames),
              got(grep { sees($s, $_) } @sent[ 50 .. $#sent ], @more),
              'Last-Event-ID: the missed updates, then live: no gap, no '
              . 'duplicate');
    is_deeply(got(($streams[1]->frames)[ @{ $want[1] } .. $streams[1]->frames - 1 ]),
              got(grep { sees($s, $_) } @more),
              'the stream beside it went on unchanged');
    for my $i (0 .. $#specs) {
        push @{ $want[$i] }, grep { sees($specs[$i], $_) } @more;
    }
    push @streams, $late;
    push @specs, $s;
    push @want, [ grep { sees($s, $_) } @sent[ 50 .. $#sent ], @more ];
}


# --- one stream cancelled by the client --------------------------------------

{
    my $n = metric('whatsapp_sse_subscribers');
    $h2->cancel($streams[0]);
    ok(wait_until(sub { (metric('whatsapp_sse_subscribers') // 0) == $n - 1 },
                  5), 'RST_STREAM from the client: that subscriber is gone');
    my @more = map { random_update($_) } 171 .. 190;
    for my $i (1 .. $#specs) {
        push @{ $want[$i] }, grep { sees($specs[$i], $_) } @more;
    }
    ok($h2->wait(sub { !grep { $streams[$_]->frames < @{ $want[$_] } }
                       1 .. $#specs }, 5),
       'the other streams go on');
    $h2->pump(0.3);
    is_deeply([ map { got($streams[$_]->frames) } 1 .. $#specs ],
              [ map { got(@{ $want[$_] }) } 1 .. $#specs ],
              'the other streams: exactly their updates, in order');
    ok(!$h2->eof, 'the connection stays open');
}


# --- a stream that stops reading beside one that reads ------------------------

{
    my $c2 = WaTest::SseH2->connect($h2port);
    my @tight = map { $c2->stream('/tight') } 1 .. 2;
    ok($c2->wait(sub { !grep { $_->body eq '' } @tight }, 5),
       'two streams of a location with whatsapp_sse_buffer 16k');
    $c2->hold($tight[0]);
    my $slow0 = metric('whatsapp_sse_slow_clients_total');
    my $n = metric('whatsapp_sse_subscribers');

    # More than the stream's 64 KiB window and the buffer together, in
    # bursts the reading stream takes between them: over HTTP/2 a stream
    # can take no more than its window at once, so one burst beyond window
    # and buffer would cut a stream that reads as well.
    my $pad = 'x' x 2000;
    my @big;
    for my $i (1 .. 60) {
        push @big, publish('note', qq({"n":$i,"pad":"$pad"}));
        next if $i % 4;
        $c2->wait(sub { $tight[1]->frames >= $i }, 5);
        $h2->pump(0);                       # the first connection reads on
    }
    ok($c2->wait(sub { $tight[1]->frames >= @big && $tight[0]->eof }, 10),
       'the stalled stream is cut off, the other one has every update')
        or diag(scalar $tight[1]->frames, ' frames, eof ', $tight[0]->eof);
    ok(defined $tight[0]{reset}, 'the stalled stream ended by RST_STREAM');
    ok(!$c2->eof, 'the connection itself stays open');
    is_deeply(got($tight[1]->frames), got(@big),
              'the reading stream: every update, in order');
    cmp_ok(scalar $tight[0]->frames, '<', scalar @big,
           'the stalled stream got only what its window took');
    is(metric('whatsapp_sse_slow_clients_total'), $slow0 + 1,
       'whatsapp_sse_slow_clients_total counts it');
    ok(wait_until(sub { (metric('whatsapp_sse_subscribers') // 0) == $n - 1 },
                  5), 'its subscriber is gone');

    my $u = publish('note', '{"after":"cut"}');
    ok($c2->wait(sub { ($tight[1]->frames)[-1]{id} eq $u->{id} }, 5),
       'the reading stream goes on after the cut');
    $c2->close;
}


# --- heartbeat ------------------------------------------------------------

{
    my $hb = $h2->stream('/hb');
    ok($h2->wait(sub { grep { $_ eq 'heartbeat' } $hb->comments }, 3),
       'a heartbeat comment on an HTTP/2 stream')
        or diag(explain [ $hb->comments ]);
    push @streams, $hb;
    push @specs, { open => 1, name => 'heartbeat' };
    push @want, [];
}


# --- graceful quit: every stream of the connection ends ----------------------

{
    $h2->pump(0.3);
    my @live = grep { !$_->eof } @streams;
    cmp_ok(scalar @live, '>=', 8, 'streams still open before the quit');
    my $t0 = time;
    kill 'QUIT', $nginx->pid;            # (quit() would wait for the exit)
    ok($h2->wait(sub { !grep { !$_->eof } @live }, 10),
       'quit: every stream on the connection ends');
    cmp_ok(time - $t0, '<', 3, 'quit: within about a second');
    is(scalar(grep { defined $_->{reset} } @live), 0,
       'quit: the streams end cleanly, none reset');
    ok($h2->wait(sub { $h2->eof }, 10), 'quit: then NGINX closes the '
       . 'connection') or diag('connection: ', $h2->eof);
    $h2->close;                          # as a browser closes its end
    $t0 = time;
    $nginx->quit;
    cmp_ok(time - $t0, '<', 3, 'quit: NGINX exits');
}

$nginx->stop;
$nginx->check_logs('sse-h2');
done_testing;
