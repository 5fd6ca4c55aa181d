# Meta's pace, as the simulator sees it: a number's throughput (never more
# than its rate in any second), the pair rate to one customer (a burst,
# then one per interval), agent replies ahead of bulk sends.
use strict;
use warnings;
use Test::More;
use WaTest;
use WaTest::Send;

my $PN = $WaTest::Send::PN;
my $TO = "+$WaTest::Send::CUSTOMER";

my $t = WaTest::Send->start(
    sim => { statuses => 'none' },
    env => { WA_SENDER_RATE => 80, WA_SENDER_PAIR_BURST => 3,
             WA_SENDER_PAIR_INTERVAL_MS => 400 });

sub template { return (type => 'template',
                       template => { name => 'hello',
                                     language => { code => 'en' } }) }

# the most requests in any window of $ms, from sorted times
sub most_in {
    my ($ms, @t) = @_;
    my ($max, $j) = (0, 0);
    for my $i (0 .. $#t) {
        $j++ while $t[$i] - $t[$j] >= $ms;
        $max = $i - $j + 1 if $i - $j + 1 > $max;
    }
    return $max;
}

# --- 500 sends to one number at 80/s ----------------------------------------

# all at once, as a campaign would queue them
my $answers = $t->send_many(map { { to => sprintf('+4930%08d', $_),
                                    priority => 'bulk', template() } }
                              1 .. 500);
is(scalar(grep { $_->{status} == 202 } @$answers), 500, '500 sends queued');

ok(wait_until(sub { $t->pg->query("SELECT count(*) FROM messages WHERE "
                                  . "status = 'accepted'") eq "500\n" }, 30),
   'all 500 accepted by Meta')
    or diag($t->pg->query("SELECT status, count(*) FROM messages "
                          . "WHERE direction = 'out' GROUP BY 1"));
my @times = sort { $a <=> $b } map { $_->{t_ms} }
            grep { $_->{phone_number_id} eq $PN } @{ $t->sim->requests };
is(scalar @times, 500, 'Meta got 500 requests, no more');
my $most = most_in(1000, @times);
cmp_ok($most, '<=', 80, "never more than 80 in any second (most: $most)");
cmp_ok($most, '>=', 70, '... and not much less: the pace is kept');
my $span = ($times[-1] - $times[0]) / 1000;
cmp_ok($span, '>=', 5.0, sprintf('500 at 80/s take over 5 s (%.2f s)', $span));

# --- the pair rate: a burst of 3, then one per 400 ms -------------------------

$t->sim->clear_requests;
my @pair;
for (1 .. 7) {
    my $res = $t->send({ to => $TO, type => 'text',
                         text => { body => "pair $_" } });
    push @pair, $res->{doc}{id};
}
ok(wait_until(sub { @{ $t->sim->requests } >= 7 }, 15),
   'the 7 messages to one customer reached Meta');
my @pt = sort { $a <=> $b } map { $_->{t_ms} } @{ $t->sim->requests };
cmp_ok($pt[2] - $pt[0], '<', 300, 'the first 3 at once (a burst)');
for my $i (3 .. 6) {
    cmp_ok($pt[$i] - $pt[$i - 1], '>=', 330,
           "then spaced by the interval ($i: " . ($pt[$i] - $pt[$i - 1])
           . " ms)");
}
# the burst's three leave together on parallel connections: Meta (as the
# simulator) may take them in any order; the spaced ones in queue order
my @bodies = map { $_->{body}{text}{body} }
             sort { $a->{t_ms} <=> $b->{t_ms} } @{ $t->sim->requests };
is_deeply([ sort @bodies[0 .. 2] ], [ map { "pair $_" } 1 .. 3 ],
          '... the burst: the first three queued');
is_deeply([ @bodies[3 .. 6] ], [ map { "pair $_" } 4 .. 7 ],
          '... then the others in the order sent');

# Meta's own pair-rate refusal: that customer waits (4^X s), others do not
$t->sim->clear_requests;
$t->sim->add_rule({ match => { to => $TO }, times => 1,
                    error => { code => 131056 } });
my $held = $t->send({ to => $TO, type => 'text',
                      text => { body => 'held' } })->{doc}{id};
sleep 0.3;
my $other = $t->send({ to => '+4930000001', template() })->{doc}{id};
ok($t->wait_status($other, 'accepted', 10), 'another customer is not held');
ok($t->wait_status($held, 'accepted', 10), 'the held one goes later');
my @h = sort { $a <=> $b } map { $_->{t_ms} } @{ $t->received($held) };
is(scalar @h, 2, '... sent again once');
cmp_ok($h[1] - $h[0], '>=', 900, '... after about a second (4^0 s)');

# --- agent replies ahead of bulk sends ----------------------------------------

$t->sim->clear_requests;
$t->send_many(map { { to => sprintf('+4931%08d', $_), priority => 'bulk',
                     template() } } 1 .. 240);
sleep 0.5;
my $reply = $t->send({ to => $TO, type => 'text', text => { body => 'agent' } },
                     { 'X-Agent' => 'ag1' })->{doc}{id};
ok($t->wait_status($reply, 'accepted', 10), 'the agent reply is sent');
my @order = map { $_->{body}{biz_opaque_callback_data} }
            sort { $a->{t_ms} <=> $b->{t_ms} } @{ $t->sim->requests };
my ($pos) = grep { $order[$_] eq $reply } 0 .. $#order;
cmp_ok($pos, '<', 120, "the reply went ahead of the bulk backlog (at $pos of "
                       . "240 + 1)");

$t->stop;
done_testing;
