# whatsapp_status: Prometheus text, summed over all worker processes,
# kept across reloads.
use strict;
use warnings;
use Test::More;
use WaTest;

my $redis = WaTest::Redis->start;
my $nginx = WaTest::Nginx->start(
    http   => "whatsapp_redis " . $redis->addr . ";",
    server => webhook_location() . ' location = /metrics { whatsapp_status; }');
my $text = fixture('text.json');

sub metrics {
    my $res = http_request($nginx->port, GET => '/metrics');
    my %m;
    $m{$1} = $2 while $res->{body} =~ /^(whatsapp_\S+) (\S+)$/mg;
    return (\%m, $res);
}

# spread over both workers by many short connections
my @reqs = ((signed_post('/webhook', 's3cret', $text)) x 40,
            (signed_post('/webhook', 'wrong', $text)) x 7,
            (http_raw(GET => '/webhook?hub.mode=subscribe&hub.verify_token=tok'
                             . '&hub.challenge=7')) x 5,
            (http_raw(GET => '/webhook?hub.mode=subscribe')) x 3,
            (http_raw(PATCH => '/webhook')) x 2);
my $res = http_parallel($nginx->port, \@reqs);
is(scalar(grep { $_->{status} } @$res), scalar @reqs, 'all answered');

my ($m, $raw) = metrics();
like($raw->{headers}{'content-type'}, qr{^text/plain; version=0\.0\.4},
     'Prometheus text content type');
is($m->{'whatsapp_webhook_requests_total{outcome="enqueued"}'}, 40,
   'enqueued counted over both workers');
is($m->{'whatsapp_webhook_requests_total{outcome="bad_signature"}'}, 7,
   'bad signatures counted');
is($m->{'whatsapp_webhook_requests_total{outcome="verified"}'}, 5,
   'handshakes counted');
is($m->{'whatsapp_webhook_requests_total{outcome="handshake_refused"}'}, 3,
   'refused handshakes counted');
is($m->{'whatsapp_webhook_requests_total{outcome="method_not_allowed"}'}, 2,
   'other methods counted');
is($m->{whatsapp_redis_connected}, 2, 'Redis connected in both workers');
is($m->{'whatsapp_redis_errors_total{kind="connect"}'}, 0, 'no errors')
    or diag(join "\n", grep { /whatsapp/ } split /\n/, $nginx->error_log);
is($m->{whatsapp_enqueue_duration_seconds_count}, 40,
   'one latency sample per enqueued event');
is($m->{'whatsapp_enqueue_duration_seconds_bucket{le="+Inf"}'}, 40,
   '+Inf bucket holds all samples');
cmp_ok($m->{whatsapp_enqueue_duration_seconds_sum}, '>', 0, 'latency sum');

my @buckets = map { $m->{$_} } sort {
    ($a =~ /le="([\d.]+)"/)[0] <=> ($b =~ /le="([\d.]+)"/)[0]
} grep { /_bucket\{le="[\d.]+"\}/ } keys %$m;
is_deeply(\@buckets, [ sort { $a <=> $b } @buckets ],
          'buckets are cumulative');

is(http_request($nginx->port, POST => '/metrics', {}, 'x')->{status}, 405,
   'POST to the status location: 405');

# counters survive a reload (new workers, same shared memory)
$nginx->reload;
ok(wait_until(sub { $nginx->count_log(qr/Redis \S+ ready/) >= 4 }, 10),
   'new workers connected');
ok(wait_until(sub { (metrics())[0]{whatsapp_redis_connected} == 2 }, 10),
   'gauge back to 2 once old workers left');
is((metrics())[0]{'whatsapp_webhook_requests_total{outcome="enqueued"}'},
   40, 'counters kept across the reload');

$nginx->stop;
$nginx->check_logs('status');
done_testing;
