# 1,000 concurrent signed POSTs over 2 workers: exactly 1,000 entries,
# each byte-identical to what was sent.
use strict;
use warnings;
use Test::More;
use WaTest;

my $redis = WaTest::Redis->start;
my $nginx = WaTest::Nginx->start(
    http   => "whatsapp_redis " . $redis->addr . ";"
            . " log_format w '\$pid \$status';"
            . " access_log logs/access.log w;",
    server => webhook_location(extra => 'whatsapp_redis_timeout 5s;'));

my $template = fixture('text.json');
my (@bodies, @reqs);
for my $i (1 .. 1000) {
    (my $b = $template) =~ s/"timestamp":"\d+"/"timestamp":"${\(1749416000 + $i)}"/;
    $b =~ s/another color\?/another color? #$i \\u00e9 \xc3\xa9/;
    push @bodies, $b;
    push @reqs, signed_post('/webhook', 's3cret', $b);
}

my $res = http_parallel($nginx->port, \@reqs, timeout => 60);
my %status;
$status{ $_->{status} }++ for @$res;
is_deeply(\%status, { 200 => 1000 }, 'all 1,000 answered 200')
    or diag(explain \%status);

my $events = $redis->events;
is(scalar @$events, 1000, 'exactly 1,000 entries in wa:events');
is_deeply([ sort map { $_->{body} } @$events ], [ sort @bodies ],
          'each entry is byte-identical to a body sent, none twice');

my %rid;
$rid{ $_->{rid} }++ for @$events;
is(scalar keys %rid, 1000, 'every entry has its own request id');
my %conn;
$conn{ (split /\./, $_->{rid})[0] }++ for @$events;
is(scalar keys %conn, 1000, 'one connection each (shared counter, 2 workers)');

$nginx->stop;
open my $log, '<', $nginx->dir . '/logs/access.log' or die $!;
my %by_worker;
while (<$log>) { $by_worker{$1}++ if /^(\d+) 200$/ }
is(scalar keys %by_worker, 2, 'both worker processes took requests')
    or diag(explain \%by_worker);

$nginx->check_logs('concurrency');
done_testing;
