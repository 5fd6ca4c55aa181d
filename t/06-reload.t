# `nginx -s reload` and graceful quit under load: no acknowledged event is
# lost, and reloads refuse nothing.
use strict;
use warnings;
use IO::Handle;
use POSIX qw(_exit);
use Test::More;
use Time::HiRes qw(time sleep);
use WaTest;

my $redis = WaTest::Redis->start;
my $nginx = WaTest::Nginx->start(
    http   => "whatsapp_redis " . $redis->addr . ";",
    # generous: this test is about reloads, not a CPU-starved Redis
    server => webhook_location(extra => 'whatsapp_redis_timeout 5s;'));
my $template = fixture('text.json');
my $results = $nginx->dir . '/results';

# the load: batches of 25 concurrent deliveries, each body unique, every
# answer written down as "<n> <status>"
my $loader = fork // die;
if ($loader == 0) {
    open my $out, '>', $results or die $!;
    $out->autoflush(1);
    my $n = 0;
    my $refused = 0;
    while ($refused < 20) {
        my (@reqs, @ids);
        for (1 .. 25) {
            $n++;
            (my $b = $template) =~ s/another color\?/another color? $n/;
            push @ids, $n;
            push @reqs, signed_post('/webhook', 's3cret', $b);
        }
        my $res = http_parallel($nginx->port, \@reqs, timeout => 10);
        print {$out} join '', map { "$ids[$_] $res->[$_]{status}\n" } 0 .. $#ids;
        $refused++ if !grep { $_->{status} } @$res;
    }
    close $out;
    _exit(0);
}

sleep 0.5;
for (1 .. 3) {
    $nginx->reload;
    sleep 0.7;
}
open my $mark, '<', $results or die $!;
my $before_quit = grep { /\n$/ } <$mark>;    # complete lines only
$nginx->quit;
waitpid($loader, 0);

my (%status, %acked, $n);
open my $in, '<', $results or die $!;
while (<$in>) {
    my ($id, $st) = split;
    $n++;
    $status{$st}++;
    $acked{$id} = 1 if $st == 200;
    is($st, 200, "delivery $id during reloads: 200")
        if $n <= $before_quit && $st != 200;
}
diag("answers: " . join ', ', map { "$_: $status{$_}" } sort keys %status);
cmp_ok(scalar keys %acked, '>', 500, 'a real load was served');
is_deeply([ sort keys %status ], [ grep { $status{$_} } 0, 200 ],
          'only 200s, and refused connections once quitting');

my %stored;
for my $ev (@{ $redis->events }) {
    $stored{$1} = 1 if $ev->{body} =~ /another color\? (\d+)"/;
}
my @lost = grep { !$stored{$_} } keys %acked;
is(scalar @lost, 0, 'every acknowledged delivery is in Redis')
    or diag("lost: @lost[0 .. ($#lost > 9 ? 9 : $#lost)]");
is(scalar(keys %stored), scalar(keys %acked),
   'and nothing unacknowledged was stored');

is($nginx->count_log(qr/signal 1 \(SIGHUP\) received/), 3,
   'three reloads happened');
like($nginx->error_log, qr/gracefully shutting down/, 'quit was graceful');
diag(join "\n", grep { /whatsapp/ && !/ready/ } split /\n/, $nginx->error_log) if $status{503};
$nginx->check_logs("reload");
done_testing;
