# whatsapp-worker's own metrics (worker.metrics_listen): GET /metrics in
# Prometheus text format, counted exactly for ingest and sends, a refused
# token's pause as a gauge, an endpoint a silent client cannot hold, a
# clean SIGTERM, bad or busy addresses refused at start.
use strict;
use warnings;
use File::Temp qw(tempdir);
use IO::Select;
use IO::Socket::INET;
use JSON::PP;
use Test::More;
use Time::HiRes qw(time sleep);
use WaTest;
use WaTest::Send;

my $bin = WaTest::Worker::binary();
my $dir = tempdir(CLEANUP => 1);
my $json = JSON::PP->new->canonical->ascii;

# GET /metrics -> { 'name{labels}' => value }, or undef when not 200
sub scrape {
    my ($port) = @_;
    my $res = http_request($port, GET => '/metrics', undef, undef,
                           timeout => 5);
    return undef unless $res->{status} == 200;
    my %m;
    for (split /\n/, $res->{body}) {
        next if /^#/;
        my ($k, $v) = /^(.+) (\S+)$/ or next;
        $m{$k} = $v;
    }
    return \%m;
}

sub metric {
    my ($port, $name) = @_;
    my $m = scrape($port) or return undef;
    return $m->{$name};
}

# waits until the metric has the value; then it is tested
sub metric_is {
    my ($port, $name, $want, $test) = @_;
    wait_until(sub { (metric($port, $name) // -1) == $want }, 10);
    is(metric($port, $name), $want, $test);
}

sub conf { temp_file($dir, $_[0]) }

sub run_worker {
    my ($env, @args) = @_;
    local @ENV{ keys %$env } = values %$env;
    my $out = `$bin @args 2>&1`;
    return ($? >> 8, $out);
}

my $seq = 0;

sub delivery {
    my ($n) = @_;
    my $c = 4915112350000 + $n % 7;
    return $json->encode({ object => 'whatsapp_business_account', entry => [
        { id => '1022', changes => [ { field => 'messages', value => {
            messaging_product => 'whatsapp',
            metadata => { phone_number_id => '1065',
                          display_phone_number => '1555' },
            contacts => [ { profile => { name => "C$c" }, wa_id => "$c" } ],
            messages => [ { from => "$c", id => "wamid.m.$n",
                            timestamp => 1749416000 + $n, type => 'text',
                            text => { body => "m $n" } } ] } } ] } ] });
}

# --- the configuration -------------------------------------------------------

my ($rc, $out) = run_worker({ WA_WORKER_METRICS_LISTEN => 'localhost:9464' },
                            '--check-config');
is($rc, 2, '--check-config: a host name for metrics_listen is refused');
like($out, qr/worker\.metrics_listen must be HOST:PORT .* not "localhost:9464"/,
     '... naming the setting and the value');

($rc, $out) = run_worker({}, '-c', conf("[worker]\nmetrics_listen = "
                                        . "127.0.0.1:65536\n"),
                         '--check-config');
is($rc, 2, '--check-config: a port out of range in the file is refused');
like($out, qr/worker\.metrics_listen must be HOST:PORT/, '... named');

for my $bad ('127.0.0.1', '::1:9464', '[::1]9464', '127.0.0.1:0',
             '127.0.0.1:x') {
    ($rc, $out) = run_worker({ WA_WORKER_METRICS_LISTEN => $bad },
                             '--check-config');
    is($rc, 2, "--check-config refuses \"$bad\"");
}

($rc, $out) = run_worker({ WA_WORKER_METRICS_LISTEN => '[::1]:9464' },
                         '--check-config');
is($rc, 0, '--check-config accepts [::1]:9464');
like($out, qr/^metrics_listen = \[::1\]:9464$/m, '... and prints it');

($rc, $out) = run_worker({}, '--check-config');
like($out, qr/^metrics_listen = $/m, 'off when not set');

# --- ingest: counted exactly ---------------------------------------------------

my $pg = WaTest::Postgres->start;
my $redis = WaTest::Redis->start;
my $mport = free_port();
my $f = conf("[worker]\nmetrics_listen = 127.0.0.1:$mport\n");
my $w = WaTest::Worker->new(redis => $redis, pg => $pg,
                            env => { WA_SENDER_ENABLED => 0 });
my ($ok, $mout) = $w->migrate;
ok($ok, 'migrate') or diag($mout);
$w->start('-c', $f);

ok(wait_until(sub { scrape($mport) }, 10), 'GET /metrics answers')
    or diag($w->log);
like($w->log, qr{metrics on http://127\.0\.0\.1:$mport/metrics},
     '... its address in the log');

my $res = http_request($mport, GET => '/metrics');
is($res->{headers}{'content-type'}, 'text/plain; version=0.0.4; charset=utf-8',
   'Prometheus text format');
is($res->{headers}{'content-length'}, length $res->{body},
   '... its length said');

# every sample's family has HELP and TYPE before it, once
my (%help, %type, @orphans, @malformed);
for (split /\n/, $res->{body}) {
    if (/^# HELP (\S+) \S/) { $help{$1}++; next }
    if (/^# TYPE (\S+) (counter|gauge)$/) { $type{$1}++; next }
    if (/^([a-z_]+)(\{[a-z_]+="(?:[^"\\\n]|\\.)*"(?:,[a-z_]+="(?:[^"\\\n]|\\.)*")*\})? -?[0-9.]+$/) {
        push @orphans, $1 unless $help{$1} && $type{$1};
        next;
    }
    push @malformed, $_;
}
is_deeply(\@malformed, [], 'every line is a comment or a sample');
is_deeply(\@orphans, [], 'every sample has HELP and TYPE before it');
is_deeply([ grep { $help{$_} != 1 || ($type{$_} // 0) != 1 } keys %help ], [],
          '... once each');

my $m = scrape($mport);
my @counters = grep { /^whatsapp_worker_\w+_total\b/ } keys %$m;
cmp_ok(scalar @counters, '>=', 18, 'the counters are all there');
is_deeply([ grep { $m->{$_} != 0 } @counters ], [], '... at 0 at start');
is($m->{whatsapp_worker_up}, 1, 'whatsapp_worker_up 1');
like(join(' ', grep { /^whatsapp_worker_info\{/ } keys %$m),
     qr/^whatsapp_worker_info\{version="\d+\.\d+\.\d+"\}$/,
     'whatsapp_worker_info names the version');
ok(abs($m->{whatsapp_worker_start_time_seconds} - time) < 60,
   'whatsapp_worker_start_time_seconds is now-ish');

my $N = 25;
$redis->cmd('XADD', 'wa:events', '*', 'body', delivery(++$seq),
            'rcvd', '1749416383000', 'rid', $seq) for 1 .. $N;
$redis->cmd('XADD', 'wa:events', '*', 'body', '{not json', 'rcvd', '1',
            'rid', 'p');
$redis->cmd('XADD', 'wa:events', '*', 'body', '{"object":"page","entry":[]}',
            'rcvd', '1', 'rid', 'p');
ok($w->drained(30), "$N deliveries, an invalid and an unknown one drained");

$m = scrape($mport);
is($m->{'whatsapp_worker_entries_total{result="ok"}'}, $N,
   "entries ok: $N");
is($m->{'whatsapp_worker_entries_total{result="invalid"}'}, 1,
   'entries invalid: 1');
is($m->{'whatsapp_worker_entries_total{result="unknown"}'}, 1,
   'entries unknown: 1');
is($m->{'whatsapp_worker_entries_total{result="dead"}'}, 0, 'entries dead: 0');
is($m->{whatsapp_worker_entries_read_total}, $N + 2, 'entries read: ' . ($N + 2));
is($pg->query("SELECT count(*) FROM webhook_log WHERE result = 'ok'"),
   "$N\n", '... as the webhook log says');
is($m->{'whatsapp_worker_apply_failures_total{reason="retry"}'}
   + $m->{'whatsapp_worker_apply_failures_total{reason="refused"}'}, 0,
   'no apply failed');
ok(wait_until(sub { (metric($mport, 'whatsapp_worker_batches_total') // 0)
                    >= 1 }, 5), 'batches counted');
cmp_ok(metric($mport, 'whatsapp_worker_batches_total'), '<=', $N + 2,
       '... no more than entries');
is($m->{whatsapp_worker_updates_published_total},
   $redis->cmd('XLEN', 'wa:updates'),
   'realtime events published: as many as wa:updates holds');
cmp_ok($m->{whatsapp_worker_updates_published_total}, '>=', $N,
       '... at least one per message');

# PostgreSQL refuses it (bigint out of range): applied alone, dead-lettered
$redis->cmd('XADD', 'wa:events', '*', 'body',
            '{"object":"whatsapp_business_account","entry":[{"id":"1",'
            . '"changes":[{"field":"messages","value":{"metadata":'
            . '{"phone_number_id":"1065"},"messages":[{"from":"1","id":'
            . '"wamid.huge","timestamp":9223372036854775807,'
            . '"type":"text"}]}}]}]}', 'rcvd', '1', 'rid', 'p');
ok($w->drained(30), 'an entry PostgreSQL refuses drained');
$m = scrape($mport);
is($m->{'whatsapp_worker_entries_total{result="dead"}'}, 1, 'entries dead: 1');
is($m->{'whatsapp_worker_entries_total{result="ok"}'}, $N, '... ok unchanged');
is($m->{'whatsapp_worker_apply_failures_total{reason="refused"}'}, 2,
   'refused: its batch, then the entry alone');
is(scalar @{ $redis->cmd('XRANGE', 'wa:dead', '-', '+') }, 1,
   '... it is in wa:dead');

# --- the endpoint's HTTP -------------------------------------------------------

run_cases($mport,
    { name => 'HEAD /metrics', method => 'HEAD', path => '/metrics',
      status => 200, body_is => '',
      header => { 'Content-Type' => qr{^text/plain; version=0\.0\.4},
                  'Content-Length' => qr/^[1-9]\d+$/ } },
    { name => 'a query string', method => 'GET', path => '/metrics?x=1',
      status => 200, body_like => qr/^whatsapp_worker_up 1$/m },
    { name => 'another path', method => 'GET', path => '/', status => 404 },
    { name => 'HEAD of another path', method => 'HEAD', path => '/x',
      status => 404, body_is => '' },
    { name => 'a longer path', method => 'GET', path => '/metrics/x',
      status => 404 },
    { name => 'POST', method => 'POST', path => '/metrics', body => 'x=1',
      status => 405, header => { Allow => 'GET, HEAD' } },
    { name => 'DELETE', method => 'DELETE', path => '/metrics',
      status => 405 },
    { name => 'garbage', raw => "garbage\r\n\r\n", status => 400 },
    { name => 'a target without /', raw => "GET metrics HTTP/1.1\r\n\r\n",
      status => 400 },
    { name => 'HTTP/2.0', raw => "GET /metrics HTTP/2.0\r\n\r\n",
      status => 400 },
    { name => 'a lower-case method', raw => "get /metrics HTTP/1.1\r\n\r\n",
      status => 400 },
    { name => 'bare LF', raw => "GET /metrics HTTP/1.0\n\n", status => 200 },
    { name => 'too long a head',
      raw => "GET /metrics HTTP/1.1\r\nX: " . ('a' x 5000) . "\r\n\r\n",
      status => 431 },
);

# a client that connects and says nothing holds no one up
my $silent = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                   PeerPort => $mport, Timeout => 5)
    or die "connect: $!";
sleep 0.1;
$res = http_request($mport, GET => '/metrics', undef, undef, timeout => 5);
is($res->{status}, 200, 'a silent client connected: another is answered');
cmp_ok($res->{elapsed}, '<', 2, "... within 2 s ($res->{elapsed} s)");
my $sel = IO::Select->new($silent);
my $buf = '';
ok($sel->can_read(3) && !sysread($silent, $buf, 100),
   '... and the silent one was closed, unanswered');
close $silent;

# a head that never ends: 408 after a second, not forever
my $t0 = time;
$res = http_request($mport, undef, undef, undef, undef,
                    raw => "GET /metrics HTTP/1.1\r\n", timeout => 5);
is($res->{status}, 408, 'a head that never ends: 408');
cmp_ok(time - $t0, '<', 2.5, '... after about a second');

# --- SIGHUP: a new address waits for a restart ---------------------------------

my $other = free_port();
open my $fh, '>', $f or die $!;
print {$fh} "[worker]\nmetrics_listen = 127.0.0.1:$other\n";
close $fh;
kill 'HUP', $w->pid;
ok(wait_until(sub { $w->log =~ /configuration reloaded/ }, 10), 'SIGHUP');
like($w->log, qr/worker\.metrics_listen "127\.0\.0\.1:$other" takes effect at the next restart; metrics stay on 127\.0\.0\.1:$mport/,
     '... a changed metrics_listen is said to need a restart');
ok(scrape($mport), '... and the old address still answers');

# --- a port in use: refused at start --------------------------------------------

my $busy = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1',
                                 LocalPort => free_port(), ReuseAddr => 0)
    or die "listen: $!";
my $bport = $busy->sockport;
my $w2 = WaTest::Worker->new(redis => $redis, pg => $pg, consumer => 'w2',
                             env => { WA_WORKER_METRICS_LISTEN =>
                                          "127.0.0.1:$bport" });
$t0 = time;
($rc, $out) = run_worker($w2->env);
isnt($rc, 0, 'metrics_listen on a port in use: the worker does not start');
like($out, qr/worker\.metrics_listen: cannot listen on 127\.0\.0\.1:$bport: Address already in use/,
     '... and says why');
cmp_ok(time - $t0, '<', 10, '... at once');
close $busy;

# --- SIGTERM with the endpoint up, a silent client connected: exit 0 ----------

$silent = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $mport,
                                Timeout => 5) or die "connect: $!";
$t0 = time;
is($w->stop('TERM'), 0, 'SIGTERM with the endpoint up: exit status 0');
cmp_ok(time - $t0, '<', 5, '... promptly');
close $silent;
ok(!IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $mport,
                          Timeout => 2), '... and the port is closed');
like($w->log, qr/whatsapp-worker stopped/, '... a clean stop');
$w->check_logs('metrics: ingest');

# --- sends: counted exactly; a refused token pauses one number ----------------

my $PN = $WaTest::Send::PN;
my $PN2 = $WaTest::Send::PN2;
my $sport = free_port();
my $t = WaTest::Send->start(env => { WA_WORKER_METRICS_LISTEN =>
                                         "127.0.0.1:$sport" });
my $sim = $t->sim;

sub template { WaTest::Send::template(@_) }

sub sends { metric($sport, "whatsapp_worker_sends_total{outcome=\"$_[0]\"}") }

$m = scrape($sport);
is($m->{'whatsapp_worker_sends_total{outcome="accepted"}'}, 0,
   'sends: none at start');
is($m->{'whatsapp_worker_entries_total{result="ok"}'}, 1,
   "the customer's first message: one entry ok");

my @ids = map { $t->send(template(sprintf '+49400001%02d', $_))->{doc}{id} }
              1 .. 5;
ok(wait_until(sub { !grep { !$t->wait_status($_, 'read', 0.1) } @ids }, 20),
   '5 sends accepted (and read)');
is(sends('accepted'), 5, 'sends accepted: 5');
is(sends('failed') + sends('unknown') + sends('retried') + sends('paused'), 0,
   '... nothing else');

$sim->add_rule({ match => { to => '+4940000199' }, error => { code => 131026 } });
my $failed = $t->send(template('+4940000199'))->{doc}{id};
ok($t->wait_status($failed, 'failed', 10), 'Meta refuses one (131026)');
is(sends('failed'), 1, 'sends failed: 1');
$sim->clear_rules;

$sim->add_rule({ match => { token => 'tok-two' }, error => { code => 190 } });
my $p2 = $t->send(template('+4940000110', phone_number_id => $PN2))->{doc}{id};
ok(wait_until(sub { $t->pg->query("SELECT send_paused_at IS NOT NULL FROM "
                                  . "phone_numbers WHERE phone_number_id = "
                                  . "'$PN2'") eq "t\n" }, 10),
   "Meta refuses ${PN2}'s token (190): paused");
$m = scrape($sport);
is($m->{whatsapp_worker_token_errors_total}, 1, 'token errors: 1');
is($m->{"whatsapp_worker_send_paused{phone_number_id=\"$PN2\",code=\"190\"}"},
   1, "whatsapp_worker_send_paused{phone_number_id=\"$PN2\"} 1");
is(scalar(grep { /^whatsapp_worker_send_paused\{/ } keys %$m), 1,
   '... the other number is not paused');
is($m->{'whatsapp_worker_sends_total{outcome="retried"}'}
   + $m->{'whatsapp_worker_sends_total{outcome="paused"}'}, 1,
   '... its message queued again, counted once');

my @more = map { $t->send(template(sprintf '+49400002%02d', $_))->{doc}{id} }
               1 .. 3;
my $p2b = $t->send(template('+4940000111', phone_number_id => $PN2))->{doc}{id};
ok(wait_until(sub { !grep { !$t->wait_status($_, 'read', 0.1) } @more }, 20),
   'the other number still sends');
is(sends('accepted'), 8, '... sends accepted: 8');
sleep 1;
is(($t->row($p2b, 'status'))[0], 'queued', "$PN2 waits");
is(metric($sport, 'whatsapp_worker_token_errors_total'), 1,
   '... token errors still 1');

is(sends('paused'), 1, "sends paused: ${PN2}'s message");

# a new token: the pause ends
$sim->clear_rules;
$t->token($PN2, 'tok-three');
ok($t->wait_status($p2, 'read', 15) && $t->wait_status($p2b, 'read', 15),
   "a new token stored: $PN2 sends");
is(sends('accepted'), 10, '... sends accepted: 10');

ok(wait_until(sub { !grep { /^whatsapp_worker_send_paused\{/ }
                          keys %{ scrape($sport) } }, 5),
   '... and whatsapp_worker_send_paused is gone');
like($t->worker->log, qr/$PN2 has a new access token, sends go on/,
     '... and the log says so');

# a read receipt
my $wamid_in = 'wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=';
$res = $t->call('POST', "/v1/messages/$wamid_in/read", undef);
is($res->{status}, 202, 'a read receipt queued');
metric_is($sport, 'whatsapp_worker_receipts_total{result="sent"}', 1,
          'receipts sent: 1');

$t->stop;
done_testing;
