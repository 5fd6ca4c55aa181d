# whatsapp-worker's command line, configuration errors and SIGHUP reload.
use strict;
use warnings;
use File::Temp qw(tempdir);
use Test::More;
use WaTest;

my $bin = WaTest::Worker::binary();
my $dir = tempdir(CLEANUP => 1);

sub run_worker {
    my ($env, @args) = @_;
    local @ENV{ keys %$env } = values %$env;
    my $out = `$bin @args 2>&1`;
    return ($? >> 8, $out);
}

sub conf { temp_file($dir, $_[0]) }

my ($rc, $out) = run_worker({}, '--version');
is($rc, 0, '--version exits 0');
like($out, qr/^whatsapp-worker \d+\.\d+\.\d+$/m, '--version prints it');

($rc, $out) = run_worker({}, '--help');
is($rc, 0, '--help exits 0');
like($out, qr/--check-config/, '--help lists the options');

($rc, $out) = run_worker({}, 'frobnicate');
is($rc, 2, 'unknown command: exit 2');
like($out, qr/unknown command "frobnicate"/, 'unknown command: says so');

($rc, $out) = run_worker({ WA_REDIS_PORT => 7000,
                           WA_POSTGRES_CONNINFO => 'password=hunter2' },
                         '-c', 'conf/whatsapp-worker.conf', '--check-config');
is($rc, 0, 'the example configuration is valid');
like($out, qr/^port = 7000$/m, 'environment overrides the file');
unlike($out, qr/hunter2/, 'secrets are not printed');

my @bad = (
    [ "[redis]\nport = http\n", qr/redis\.port must be an integer from 0 to 65535, not "http" \(line 2\)/ ],
    [ "[worker]\nbatch = 0\n", qr/worker\.batch must be an integer from 1/ ],
    [ "[worker]\nbacth = 10\n", qr/unknown setting \[worker\] bacth \(line 2\)/ ],
    [ "[worker]\nlog_level = loud\n", qr/log_level must be error, warn, info or debug/ ],
    [ "this is not ini\n", qr/syntax error/ ],
);
for my $b (@bad) {
    my $f = conf($b->[0]);
    ($rc, $out) = run_worker({}, '-c', $f, '--check-config');
    is($rc, 2, "bad config exits 2: $b->[0]" =~ s/\n/ /gr);
    like($out, $b->[1], 'and says where and why');
}
($rc, $out) = run_worker({ WA_WORKER_BATCH => 'many' }, '--check-config');
is($rc, 2, 'bad environment value exits 2');
like($out, qr/WA_WORKER_BATCH: worker\.batch must be an integer/,
     'and names the variable');
($rc, $out) = run_worker({}, '-c', '/nonexistent.conf', '--check-config');
like($out, qr/cannot open \/nonexistent\.conf/, 'missing file named');

# --- SIGHUP: a new log level takes effect; a broken file is refused
my $pg = WaTest::Postgres->start;
my $redis = WaTest::Redis->start;
my $f = conf("[worker]\nlog_level = info\n");
my $w = WaTest::Worker->new(redis => $redis, pg => $pg);
$w->migrate;
$w->start('-c', $f);
open my $fh, '>', $f or die $!;
print {$fh} "[worker]\nlog_level = debug\n";
close $fh;
kill 'HUP', $w->pid;
ok(wait_until(sub { $w->log =~ /configuration reloaded/ }, 10), 'SIGHUP reloads');
$redis->cmd('XADD', 'wa:events', '*', 'body', fixture('text.json'),
            'rcvd', '1', 'rid', '1');
ok(wait_until(sub { $w->log =~ /\[debug\] batch applied/ }, 10),
   'the new log level is in effect');
open $fh, '>', $f or die $!;
print {$fh} "[worker]\nbatch = none\n";
close $fh;
kill 'HUP', $w->pid;
ok(wait_until(sub { $w->log =~ /reload refused, keeping the running configuration/ }, 10),
   'a broken file is refused on reload');
ok(WaTest::Process::alive($w->pid), 'and the worker keeps running');
is($w->stop, 0, 'clean stop');
$w->check_logs('cli');
done_testing;
