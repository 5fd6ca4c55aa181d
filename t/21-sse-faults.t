# whatsapp_events when things go wrong: Redis restarted under connected
# clients (nothing missed), a replay needed while Redis is down (it waits), a
# client that stops reading (cut off, the others unaffected), 10,000
# streams opened and dropped (no subscriber left, a clean log, no leak
# under WA_ASAN=1), and reload and quit with streams open (ended cleanly,
# resumed on the new workers with nothing lost).
use strict;
use warnings;
use File::Temp qw(tempdir);
use IO::Select;
use IO::Socket::INET;
use POSIX qw(WNOHANG _exit);
use Test::More;
use Time::HiRes qw(time sleep);
use WaTest;
use WaTest::Sse;

my $dir = tempdir('wa-sse-faults-XXXXXX', TMPDIR => 1, CLEANUP => 1);

my $redis = WaTest::Redis->start;
my $h2port = free_port();
my $open = 'whatsapp_events; whatsapp_auth off;';
my $nginx = WaTest::Nginx->start(
    http   => "whatsapp_redis " . $redis->addr . " connect_timeout=300ms;"
            . " server { listen 127.0.0.1:$h2port http2;"
            . "   location = /open { $open } }",
    server => 'add_header X-Worker $pid;'
            . " location = /open { $open }"
            . " location = /slow { $open whatsapp_sse_buffer 4k; }"
            . " location = /churn { $open whatsapp_sse_replay 20; }"
            . ' location = /status { whatsapp_status; }'
            . ' ' . webhook_location());

sub relays_ready {
    my ($n) = @_;
    return wait_until(sub { $nginx->count_log(qr/relaying wa:updates from/)
                            >= $n }, 10);
}
ok(relays_ready(2), 'both workers relay wa:updates') or diag($nginx->log_tail);

sub workers { sort split ' ', `pgrep -P ${\ $nginx->pid}` }
my @workers = workers();

sub metric { $nginx->metric($_[0]) }

sub subscribers_are {
    my ($n, $timeout) = @_;
    return wait_until(sub { (metric('whatsapp_sse_subscribers') // -1)
                            == $n }, $timeout // 10);
}

sub stream { WaTest::Sse->connect($nginx->port, @_) }

sub stream_on { WaTest::Sse->connect_on($_[0], $nginx->port, @_[1 .. $#_]) }

sub publish {
    my ($event, $data) = @_;
    return WaTest::Sse::publish($redis, $event, $data,
                                phone => ref $data ? $data->{phone_number_id}
                                                   : undef);
}

my $n = 0;
sub update {
    my ($phone) = @_;
    $n++;
    return publish($n % 3 ? 'message.new' : 'message.status',
                   { phone_number_id => $phone, conversation_id => "c-$phone",
                     n => $n });
}

sub got { WaTest::Sse::got(@_) }

sub all_frames { map { $_->frames } @_ }


# --- Redis restarted while clients are connected ---------------------------

{
    # on each worker: one for everything, one for p1
    my @c = (stream_on($workers[0], '/open'),
             stream_on($workers[1], '/open'),
             stream_on($workers[0], '/open?phone_number_id=p1'),
             stream_on($workers[1], '/open?phone_number_id=p1'));
    my @filter = (undef, undef, 'p1', 'p1');
    is_deeply([ map { $_->worker } @c ], [ @workers, @workers ],
              'streams on both workers');

    my @before = map { update($_ % 2 ? 'p1' : 'p2') } 1 .. 20;
    my $last = $before[-1]{id};
    ok(WaTest::Sse::wait_all(\@c, sub {
           ($c[0]->last_id // '') eq $last && ($c[1]->last_id // '') eq $last
       }, 10), 'before the restart: relayed by both workers');

    $redis->stop;
    ok(wait_until(sub { (metric('whatsapp_redis_connected') // -1) == 0 }, 5),
       'Redis stopped: every connection (commands, relays) noticed');
    WaTest::Sse::wait_all(\@c, sub { 0 }, 0.3);
    is(scalar(grep { $_->eof || $_->ended } @c), 0,
       'Redis stopped: the streams stay open');

    # while it is down: live streams start, and so do replays, which wait
    # for Redis (a browser's EventSource gives up on an error status)
    my $live = stream('/open');
    is($live->status, 200, 'Redis down: a stream without Last-Event-ID: 200');
    my $waiting = stream_on($workers[0], '/open',
                            headers => { 'Last-Event-ID' => $before[0]{id} });
    is($waiting->status, 200, 'Redis down: a replay needed: 200, it waits');
    is($waiting->header('content-type'), 'text/event-stream',
       'Redis down: a replay needed: the stream is open');
    my $at = stream_on($workers[0], '/open',
                       headers => { 'Last-Event-ID' => $last });
    is($at->status, 200, 'Redis down: Last-Event-ID at the end: 200 (nothing '
       . 'to replay)');

    # back, empty (no persistence): what is published now is not missed
    $redis->restart;
    my @after = map { update($_ % 2 ? 'p1' : 'p2') } 1 .. 20;
    my @all = (@before, @after);
    push @c, $live, $at;
    push @filter, undef, undef;
    my $want = sub {
        my ($f, @u) = @_;
        return grep { !defined $f || ($_->{phone} // '') eq $f } @u;
    };
    ok(WaTest::Sse::wait_all(\@c, sub {
           !grep { ($_->last_id // '') ne $after[-1]{id} } @c[0, 1, 4, 5]
       }, 20), 'Redis restarted: the updates published since arrive');
    WaTest::Sse::wait_all(\@c, sub { 0 }, 0.3);
    for my $i (0 .. 3) {
        is_deeply(got($c[$i]->frames), got($want->($filter[$i], @all)),
                  'across the restart, ' . ($filter[$i] // 'everything')
                  . ' on worker ' . $c[$i]->worker . ': nothing missed, '
                  . 'nothing twice');
    }
    is_deeply(got($live->frames), got(@after),
              'a stream opened while Redis was down: what came after');
    is_deeply(got($at->frames), got(@after),
              'a stream resumed while Redis was down: what came after');
    ok(wait_until(sub { (metric('whatsapp_redis_connected') // -1) == 6 }, 10),
       'all six connections back (commands, relay, replays per worker)');

    # the replay asked while Redis was down: its id went with the data
    ok($waiting->wait_frames(1, 10), 'the waiting replay: answered');
    my ($reset, @rest) = $waiting->frames;
    is($reset->{event}, 'reset', 'the waiting replay: reset (Redis lost the '
       . 'id it asked from)');
    ok($waiting->wait(sub { ($waiting->last_id // '') eq $after[-1]{id} }, 10)
       || $reset->{id} eq $after[-1]{id},
       'the waiting replay: live after the reset');
    ($reset, @rest) = $waiting->frames;
    my ($rms, $rseq) = split /-/, $reset->{id};
    is_deeply(got(@rest),
              got(grep { my ($m, $q) = split /-/, $_->{id};
                         $m > $rms || ($m == $rms && $q > $rseq) } @after),
              'the waiting replay: after the reset, exactly what follows it');

    # Redis lost its data: an id from before is not in the stream any more
    my $r = stream('/open', headers => { 'Last-Event-ID' => $before[5]{id} });
    ok($r->wait_frames(1, 5), 'Last-Event-ID from before the data loss: '
       . 'a frame');
    is_deeply([ @{ ($r->frames)[0] }{qw(event data)} ],
              [ 'reset', '{"reason":"last_event_id_expired"}' ],
              'Last-Event-ID from before the data loss: reset');
    $_->close for @c, $r, $waiting;
    ok(subscribers_are(0), 'all closed: no subscriber');
}


# --- a whole office reconnecting at once ----------------------------------

# Replays run on their own connection, a few at a time: 300 browsers
# asking for 500 missed updates each (about 20 MB from Redis) must not
# delay the webhook's XADDs past whatsapp_redis_timeout.
{
    my @missed = map { update('p1') } 1 .. 500;
    my @c = map { WaTest::Sse->open($nginx->port, '/open',
                      headers => { 'Last-Event-ID' => $missed[0]{id} }) }
                1 .. 300;
    my $body = '{"object":"whatsapp_business_account","entry":[]}';
    my @res = @{ http_parallel($nginx->port,
                               [ map { signed_post('/webhook', 's3cret',
                                                   $body) } 1 .. 20 ]) };
    is(scalar(grep { $_->{status} == 200 } @res), 20,
       'webhooks during 300 replays: all 200');
    my $want = got(@missed[1 .. $#missed]);
    ok(WaTest::Sse::wait_all(\@c, sub {
           !grep { ($_->last_id // '') ne $missed[-1]{id} } @c
       }, 60), '300 replays: all done');
    is(scalar(grep { !eq_array(got($_->frames), $want) } @c), 0,
       '300 replays: each got exactly the 499 it missed');
    unlike($nginx->error_log, qr/did not answer a command in time/,
           '300 replays: no Redis command timed out');
    $_->close for @c;
    ok(subscribers_are(0), 'replays closed: no subscriber');
}


# --- 10,000 streams opened and dropped -------------------------------------

{
    my $old = update('p1')->{id};
    update('p2') for 1 .. 9;

    # a publisher meanwhile, on its own connection
    my $pub = fork // die "fork: $!";
    if ($pub == 0) {
        # never the parent's exit: its destructors would stop the servers
        $SIG{TERM} = $SIG{INT} = sub { _exit(0) };
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                      PeerPort => $redis->port) or _exit(1);
        # (a stream capped near 1,000: the old id is trimmed away in
        # time, so both replays and resets are cut short)
        for (my $i = 0; ; $i++) {
            my @a = ('XADD', 'wa:updates', 'MAXLEN', '~', 1000, '*',
                     'event', 'message.new',
                     'data', qq({"phone_number_id":"p1","churn":$i}));
            print {$s} '*' . @a . "\r\n",
                       map { '$' . length($_) . "\r\n$_\r\n" } @a;
            my $len = <$s>;              # "$<n>", then the id
            defined $len && defined <$s> or last;
            sleep 0.002;
        }
        _exit(0);
    }

    # each: connect, GET, then by turns: close at once; read the hello and
    # close; the same with a replay in flight (Last-Event-ID; replays of
    # at most 20 there, so that Redis keeps up)
    my $N = 10_000;
    my $PAR = 64;
    my ($started, $done, $streamed, $aborted) = (0, 0, 0, 0);
    my (@failed, %conn);
    my ($rsel, $wsel) = (IO::Select->new, IO::Select->new);
    my $t0 = time;
    my $deadline = $t0 + 120;
    while ($done < $N && time < $deadline) {
        while ($started < $N && keys %conn < $PAR) {
            my $k = $started++;
            my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                          PeerPort => $nginx->port,
                                          Blocking => 0);
            if (!$s) { push @failed, "$k: connect: $!"; $done++; next }
            my $req = "GET /churn HTTP/1.1\r\nHost: localhost\r\n"
                    . ($k % 4 == 1 ? "Last-Event-ID: $old\r\n" : '')
                    . "\r\n";
            $conn{ fileno $s } = { s => $s, out => $req, in => '', k => $k };
            $wsel->add($s);
        }
        my ($r, $w) = IO::Select->select($rsel, $wsel, undef, 1);
        for my $s (@{ $w // [] }) {
            my $c = $conn{ fileno $s };
            my $wn = syswrite $s, $c->{out};
            if (!defined $wn) {
                next if $!{EAGAIN} || $!{EINPROGRESS};
                push @failed, "$c->{k}: send: $!";
            } else {
                substr($c->{out}, 0, $wn) = '';
                next if length $c->{out};
                if ($c->{k} % 4) { $wsel->remove($s); $rsel->add($s); next }
                $aborted++;              # gone before any answer
            }
            $wsel->remove($s);
            delete $conn{ fileno $s };
            close $s;
            $done++;
        }
        for my $s (@{ $r // [] }) {
            my $c = $conn{ fileno $s };
            my $rn = sysread $s, $c->{in}, 65536, length $c->{in};
            next if !defined $rn && $!{EAGAIN};
            if ($c->{in} =~ m{\AHTTP/1\.1 200 OK\r\n.*?\r\n\r\n[0-9a-f]+\r\n: whatsapp events\nretry: 2000\n\n}s) {
                $streamed++;
            } elsif (!$rn || $c->{in} =~ m{\AHTTP/1\.1 (?!200)}) {
                push @failed, "$c->{k}: " . substr($c->{in}, 0, 80);
            } else {
                next;                    # more to come
            }
            $rsel->remove($s);
            delete $conn{ fileno $s };
            close $s;
            $done++;
        }
    }
    my $took = time - $t0;
    kill 'TERM', $pub;
    waitpid $pub, 0;
    diag(sprintf '%d connections in %.1f s', $done, $took);
    is($done, $N, "$N connections opened and dropped");
    is($streamed, $N - $aborted, 'every one that waited got its stream');
    is(scalar @failed, 0, 'no connection failed') or diag(join "\n",
        @failed[ 0 .. ($#failed > 9 ? 9 : $#failed) ]);
    cmp_ok($took, '<', $ENV{WA_ASAN} ? 90 : 30, 'in reasonable time');
    ok(subscribers_are(0, 15), 'whatsapp_sse_subscribers back to 0')
        or diag(metric('whatsapp_sse_subscribers'));
    my $c = stream('/open');
    my $u = update('p3');
    ok($c->wait(sub { ($_[0]->last_id // '') eq $u->{id} }, 5),
       'a new stream after the churn: live updates');
    $c->close;
    ok(subscribers_are(0), 'and gone');
}


# --- a client that stops reading ----------------------------------------------

{
    my $slow0 = metric('whatsapp_sse_slow_clients_total');
    # it reads the hello (then it is subscribed), then never again; a
    # small receive buffer, so the server's side fills soon
    my $s = stream('/slow', rcvbuf => 4096);
    is($s->status, 200, 'the slow client is streaming');
    # another on the same worker, same location (buffer 4k), small updates
    my $f = stream_on($s->worker, '/slow?events=message.status');
    is($f->worker, $s->worker, 'a reading client on the same worker');

    my $blob = 'x' x 65536;
    my (@small, $cut, $bytes);
    for my $i (1 .. 300) {
        for (1 .. 4) {
            my $u = publish('message.new',
                            { phone_number_id => 'p1', blob => $blob });
            $bytes += length $u->{data};
        }
        push @small, publish('message.status',
                             { phone_number_id => 'p1', n => $i });
        $f->wait(sub { ($_[0]->last_id // '') eq $small[-1]{id} }, 10)
            or last;
        if (metric('whatsapp_sse_slow_clients_total') > $slow0) {
            $cut = $bytes;
            last;
        }
    }
    ok($cut, sprintf 'the client that stopped reading was cut off (after '
       . '%.1f MB published)', ($cut // 0) / 1e6);
    is(metric('whatsapp_sse_slow_clients_total') - $slow0, 1,
       'whatsapp_sse_slow_clients_total counted it');
    like($nginx->error_log, qr/SSE client fell \d+ bytes behind, closing/,
         'logged');

    push @small, map { publish('message.status',
                               { phone_number_id => 'p1', n => $_ }) }
                 1001 .. 1005;
    ok($f->wait_frames(scalar @small, 10), 'the reading client goes on');
    is_deeply(got($f->frames), got(@small),
              'the reading client got every update of its own, in order');
    ok(!$f->eof, 'the reading client is still connected');

    my $got = length $s->body;
    ok($s->wait_eof(20), 'the slow client, reading again, finds the '
       . 'connection closed');
    ok(!$s->ended, 'closed, not ended as a response (it must reconnect)');
    cmp_ok(length $s->body, '<', $cut // 0, 'it had not got everything');
    ok(subscribers_are(1), 'the slow client is no subscriber any more');
    $f->close;
    ok(subscribers_are(0), 'and the other gone too');
    $redis->cmd('DEL', 'wa:updates');           # 20 MB of blobs
}


# --- reload and quit with streams open --------------------------------------

{
    my @filter = (undef, 'p2', undef, 'p2');
    my @c = map { stream_on($workers[ $_ % 2 ],
                            '/open' . ($filter[$_] ? "?phone_number_id="
                                                     . $filter[$_] : ''))
                } 0 .. 3;
    is_deeply([ sort map { $_->worker } @c[0, 1] ], \@workers,
              'streams on both workers');
    my $want = sub {
        my ($f, @u) = @_;
        return grep { !defined $f || ($_->{phone} // '') eq $f } @u;
    };

    # and an HTTP/2 one (curl)
    my $curl;
    my $h2out = "$dir/h2.out";
    my $curl_ok = `curl -V 2>&1` =~ /^Features:.*\bHTTP2\b/m;
    if ($curl_ok) {
        $curl = WaTest::Process::spawn(
            argv => [ 'curl', '-sS', '-N', '--http2-prior-knowledge',
                      '-o', $h2out, "http://127.0.0.1:$h2port/open" ],
            stdout => "$dir/h2.log");
    }
    ok(subscribers_are(4 + ($curl ? 1 : 0)), 'all subscribed');

    my @a = map { update($_ % 2 ? 'p1' : 'p2') } 1 .. 10;
    ok(WaTest::Sse::wait_all(\@c, sub {
           !grep { ($_->last_id // '') ne $a[-1]{id} } @c[0, 2] }, 10),
       'before the reload: relayed');

    my $t0 = time;
    $nginx->reload;
    ok(WaTest::Sse::wait_all(\@c, sub { !grep { !$_->ended } @c }, 10),
       'reload: every stream ended cleanly (the last chunk)');
    my $took = time - $t0;
    cmp_ok($took, '<', 3, sprintf 'reload: within about a second (%.2f s)',
           $took);
    ok(WaTest::Sse::wait_all(\@c, sub { !grep { !$_->eof } @c }, 10),
       'reload: and the old workers closed the connections');
    is(scalar(grep { length($_->{trailing} // '') } @c), 0,
       'reload: nothing after the last chunk');
    SKIP: {
        skip 'curl without HTTP/2', 2 unless $curl;
        my $exited = wait_until(sub { waitpid($curl, WNOHANG) == $curl }, 5);
        ok($exited, 'reload: the HTTP/2 stream ended (curl is done)');
        is($exited ? $? >> 8 : -1, 0, 'reload: ... cleanly (curl exit 0)')
            or diag(slurp("$dir/h2.log"));
        WaTest::Process::stop($curl, 'KILL', 1) unless $exited;
    }

    # published between the end and the reconnect
    my @b = map { update($_ % 2 ? 'p1' : 'p2') } 1 .. 10;

    ok(wait_until(sub {
           my @now = workers();
           @now == 2 && !grep { my $p = $_; grep { $_ eq $p } @workers } @now
       }, 10), 'reload: two new worker processes, the old ones gone');
    my @new = workers();

    # browsers come back with Last-Event-ID (a 503 is tried again)
    my $refused = 0;
    for my $i (0 .. 3) {
        my $last = $c[$i]->last_id;
        my $path = '/open' . ($filter[$i] ? "?phone_number_id=$filter[$i]"
                                          : '');
        my $r;
        for (1 .. 50) {
            $r = stream($path, headers => { 'Last-Event-ID' => $last });
            last if $r->status == 200;
            $refused++;
            $r->close;
            sleep 0.1;
        }
        is($r->status, 200, "reconnect $i: 200");
        ok((grep { $_ eq ($r->worker // '') } @new),
           "reconnect $i: served by a new worker");
        push @c, $r;
    }
    diag("$refused reconnects answered 503 first") if $refused;

    my @cc = map { update($_ % 2 ? 'p1' : 'p2') } 1 .. 10;
    my @now = @c[4 .. 7];
    ok(WaTest::Sse::wait_all(\@now, sub {
           !grep { ($_->last_id // '') ne $cc[-1]{id} } @now[0, 2] }, 10),
       'after the reload: relayed');
    WaTest::Sse::wait_all(\@now, sub { 0 }, 0.3);
    for my $i (0 .. 3) {
        is_deeply(got($c[$i]->frames, $c[ $i + 4 ]->frames),
                  got($want->($filter[$i], @a, @b, @cc)),
                  "across the reload, client $i ("
                  . ($filter[$i] // 'everything') . '): nothing lost, '
                  . 'nothing twice');
    }
    is($nginx->count_log(qr/signal 1 \(SIGHUP\) received/), 1, 'one reload');

    # quit with the streams open: they end, NGINX exits at once
    $t0 = time;
    $nginx->quit;
    $took = time - $t0;
    cmp_ok($took, '<', 5, sprintf 'quit with streams open: NGINX exited in '
           . '%.2f s', $took);
    ok(WaTest::Sse::wait_all(\@now, sub { !grep { !$_->ended } @now }, 5),
       'quit: every stream ended cleanly');
    like($nginx->error_log, qr/gracefully shutting down/, 'quit: graceful');
}

$nginx->check_logs('sse faults');

done_testing;
