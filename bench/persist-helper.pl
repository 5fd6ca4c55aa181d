#!/usr/bin/perl
#
# Helper for bench/persist (not meant to be run on its own).
#
#   persist-helper.pl gen DIR N SEED
#       writes DIR/events.resp  (XADD wa:events * body .. rcvd .. rid .., RESP)
#              DIR/messages.csv (the inbound messages, as rows of `messages`)
#              DIR/statuses.csv (the statuses, as rows of `message_statuses`)
#              DIR/seed.csv     (the outbound messages the statuses are for,
#                                as the API would have stored them)
#       and prints one line: GEN inbound=.. statuses=.. outbound=.. ...
#
#   persist-helper.pl monitor REDIS_PORT PID[,PID...] T0_MS N TIMEOUT
#       polls XLEN / XPENDING every 100 ms until the stream is drained,
#       samples each worker's VmRSS every second, prints
#       DRAIN seconds=.. rss_min_kb=.. rss_max_kb=.. ...
#
#   persist-helper.pl cpu PID...
#       CPU seconds (user + system) used so far by each PID, with its
#       children (live ones and those it has reaped), one number each.

use strict;
use warnings;
use utf8;

use Digest::MD5 qw(md5_hex);
use IO::Socket::INET;
use MIME::Base64 qw(encode_base64);
use POSIX qw(strftime);
use Time::HiRes qw(time sleep);

# --- JSON and CSV, by hand (JSON::PP would take minutes for 200k) ---------

# A JSON string as Meta writes it: non-ASCII escaped as \uXXXX (Meta signs
# the escaped form), so every body is plain ASCII.
sub js {
    my ($s) = @_;
    $s =~ s/(["\\])/\\$1/g;
    $s =~ s/\n/\\n/g;
    $s =~ s{([^\x20-\x7e])}{
        my $c = ord $1;
        $c > 0xffff
            ? sprintf('\\u%04x\\u%04x', 0xd800 + (($c - 0x10000) >> 10),
                      0xdc00 + (($c - 0x10000) & 0x3ff))
            : sprintf('\\u%04x', $c)
    }ge;
    return qq("$s");
}

sub csv {
    return join(',', map {
        defined $_ ? '"' . ($_ =~ s/"/""/gr) . '"' : ''
    } @_) . "\n";
}

sub ts_text { strftime('%Y-%m-%d %H:%M:%S+00', gmtime $_[0]) }

sub uuid_of {
    my $h = md5_hex($_[0]);
    return join '-', substr($h, 0, 8), substr($h, 8, 4), substr($h, 12, 4),
                     substr($h, 16, 4), substr($h, 20);
}

sub resp {
    return '*' . scalar(@_) . "\r\n"
           . join('', map { '$' . length($_) . "\r\n$_\r\n" } @_);
}


# --- the deliveries ---------------------------------------------------------

my @FIRST = qw(Anna Ben Carla David Elif Fatima Georg Hannah Ivan Julia
               Kemal Lena Marco Nadia Oskar Paula Quentin Rosa Stefan Tanja
               Umut Vera Wei Xenia Yusuf Zoe Luca Sofia Jonas Mia);
my @FIRST_U = ('José', 'Zoë', 'Jürgen', 'Ayşe', 'Łukasz', 'Renée', 'Søren',
               'Ömer', 'François', 'Ana María');
my @LAST = qw(Müller Schmidt Yilmaz Rossi Garcia Novak Kowalski Dubois Silva
              Jensen Fischer Weber Costa Popescu Nielsen Meyer Wagner Becker);
my @SENTENCES = (
    "Hi, I ordered the blue kettle last week and it still has not shipped.",
    "Could you tell me when order %d will arrive?",
    "The tracking link you sent does not work for me.",
    "Thanks a lot, that was quick!",
    "Is the shop open on Sunday?",
    "I would like to change the delivery address to Hauptstraße %d.",
    "Can I pay by invoice or only by card?",
    "The parcel arrived but one item is missing.",
    "Do you have this in size M?",
    "Please call me back after 5 pm.",
    "I'm sending a photo of the damaged box in a minute.",
    "Great, see you tomorrow at 10.",
    "What is the warranty on the espresso machine?",
    "My discount code SPRING%d was not accepted at checkout.",
    "Perfect 👍",
    "Ok, merci beaucoup 😊",
    "Where can I return it?",
    "I already wrote yesterday but got no answer.",
    "Can you reserve two tickets for Friday evening?",
    "The app keeps logging me out when I open my orders.",
    "Is express shipping available to Austria?",
    "Thank you, have a nice day!",
);
my @WORDS = qw(please order delivery today tomorrow thanks invoice refund
               parcel address number again morning evening week price
               colour size store branch courier payment card account);

sub sentence {
    my $s = $SENTENCES[ rand @SENTENCES ];
    return $s =~ /%d/ ? sprintf($s, 10000 + int rand 90000) : $s;
}

# Meta-like message ids: wamid.HBg + base64 of the customer + 20 hex digits
sub wamid {
    my ($wa, $tag) = @_;
    return 'wamid.HBgN' . (encode_base64($wa, '') =~ tr/=//dr)
           . 'FQIAEhgU' . uc(substr(md5_hex($tag), 0, 20)) . 'AA==';
}

sub gen {
    my ($dir, $n, $seed) = @_;
    srand($seed // 1);

    my $n_in = int($n * 0.7 + 0.5);
    my $n_st = $n - $n_in;
    my $now = int time;
    my $span = $n / 50 > 600 ? int($n / 50) : 600;  # seconds of traffic
    my $t0 = $now - $span - 120;
    my $waba = '102290129340398';
    my @pns = ([ '106540352242922', '15550783881' ],
               [ '206540352242922', '15550783882' ]);

    my @customers;
    for my $c (0 .. 4999) {
        my $cc = (qw(49 49 49 44 34 39 90 31 43 33))[ $c % 10 ];
        my $first = $c % 7 == 0 ? $FIRST_U[ rand @FIRST_U ]
                                : $FIRST[ rand @FIRST ];
        my $name = $c % 5 == 0 ? $first
                               : "$first $LAST[ rand @LAST ]";
        push @customers, { wa => $cc . (1510000000 + $c * 7919),
                           name => $name, pn => $pns[ $c % 2 ] };
    }
    my $pick = sub { $customers[ int(@customers * rand() ** 1.3) ] };

    # [ts, kind, data]: inbound messages, statuses of outbound messages
    my (@events, @outbound);
    for my $i (1 .. $n_in) {
        push @events, [ $t0 + int rand $span, 'in', { c => $pick->(), i => $i } ];
    }
    my $o = 0;
    my $n_status = 0;
    while ($n_status < $n_st) {
        my $c = $pick->();
        my $sent = $t0 + int rand($span * 0.9);
        my $out = { c => $c, at => $sent, o => ++$o,
                    wamid => wamid($c->{wa}, "out$o"),
                    conv => md5_hex("conv:$c->{wa}:" . int($sent / 86400)),
                    cb => 'campaign=' . (qw(spring-sale reorder-reminder
                                            delivery-update survey))[ $o % 4 ]
                          . ';order=' . (100000 + $o) };
        push @outbound, $out;
        my @st = ([ 'sent', $sent + 1 + int rand 3 ],
                  [ 'delivered', $sent + 4 + int rand 20 ]);
        push @st, [ 'read', $sent + 30 + int rand 900 ] if rand() < 0.8;
        for my $s (@st) {
            last if $n_status >= $n_st;
            push @events, [ $s->[1], 'st', { out => $out, status => $s->[0] } ];
            $n_status++;
        }
    }
    my $k = 0;
    $_->[3] = $k++ for @events;
    @events = sort { $a->[0] <=> $b->[0] || $a->[3] <=> $b->[3] } @events;

    open my $resp, '>:raw', "$dir/events.resp" or die "$dir: $!";
    open my $mcsv, '>:utf8', "$dir/messages.csv" or die $!;
    open my $scsv, '>:utf8', "$dir/statuses.csv" or die $!;
    open my $seedf, '>:utf8', "$dir/seed.csv" or die $!;

    my ($bytes, $min, $max, $conn, $req) = (0, 1e9, 0, 1000, 0);
    my $rcvd_base = ($now - 5) * 1000;   # received just now: today's partition
    my $seq = 0;

    for my $e (@events) {
        my ($ts, $kind, $d) = @$e;
        my $target = 600 + int rand 301;
        my ($body, $row);

        if ($kind eq 'in') {
            my $c = $d->{c};
            my $pn = $c->{pn};
            my $w = wamid($c->{wa}, "in$d->{i}");
            my $ctx = rand() < 0.1 && @outbound
                ? '"context":{"from":"' . $pn->[1] . '","id":"'
                  . $outbound[ rand @outbound ]{wamid} . '"},'
                : '';
            my $mk = sub {
                my ($text) = @_;
                my $msg = '{"from":"' . $c->{wa} . '","id":"' . $w . '",'
                    . $ctx . '"timestamp":"' . $ts . '","text":{"body":'
                    . js($text) . '},"type":"text"}';
                my $b = envelope($waba, $pn, '"contacts":[{"profile":{"name":'
                                 . js($c->{name}) . '},"wa_id":"' . $c->{wa}
                                 . '"}],"messages":[' . $msg . ']');
                return ($b, $msg);
            };
            my $text = sentence();
            my ($b) = $mk->($text);
            while (length($b) < $target - 12) {
                my $more = rand() < 0.6 ? ' ' . sentence()
                                        : ' ' . $WORDS[ rand @WORDS ];
                ($b) = $mk->($text . $more);
                last if length($b) > $target + 40;
                $text .= $more;
            }
            my $msg;
            ($body, $msg) = $mk->($text);
            print $mcsv csv($w, uuid_of("$pn->[0]:$c->{wa}"), $pn->[0],
                            $c->{wa}, 'in', 'webhook', 'text', ts_text($ts),
                            $text, $msg);
        } else {
            my $out = $d->{out};
            my $c = $out->{c};
            my $pn = $c->{pn};
            my $mk = sub {
                my ($cb) = @_;
                my $s = '{"id":"' . $out->{wamid} . '","status":"'
                    . $d->{status} . '","timestamp":"' . $ts
                    . '","recipient_id":"' . $c->{wa} . '"';
                if ($d->{status} ne 'read') {
                    $s .= ',"conversation":{"id":"' . $out->{conv} . '",'
                        . ($d->{status} eq 'sent'
                           ? '"expiration_timestamp":"' . ($out->{at} + 86400)
                             . '",' : '')
                        . '"origin":{"type":"utility"}},"pricing":{'
                        . '"billable":true,"pricing_model":"PMP",'
                        . '"category":"utility","type":"regular"}';
                }
                $s .= ',"biz_opaque_callback_data":' . js($cb) . '}';
                return (envelope($waba, $pn, '"statuses":[' . $s . ']'), $s);
            };
            my $cb = $out->{cb};
            my ($b) = $mk->($cb);
            $cb .= ';ref=' . substr(md5_hex("$out->{o}:$_"), 0, 16) for
                1 .. ($target - length $b) / 21;
            my $raw;
            ($body, $raw) = $mk->($cb);
            print $scsv csv($out->{wamid}, $d->{status}, ts_text($ts),
                            $pn->[0], $c->{wa},
                            $d->{status} eq 'read' ? undef : $out->{conv},
                            $d->{status} eq 'read' ? undef : 'utility', $raw);
        }

        $conn += 1 + int rand 3 if ++$req > 1 + rand 50;
        $req = 1 if $req > 50;
        my $rcvd = $rcvd_base + int($seq++ * 5000 / @events);
        print $resp resp('XADD', 'wa:events', '*', 'body', $body,
                         'rcvd', $rcvd, 'rid', "$conn.$req");
        $bytes += length $body;
        $min = length $body if length $body < $min;
        $max = length $body if length $body > $max;
    }

    for my $out (@outbound) {
        my $c = $out->{c};
        my $text = "Your order " . (100000 + $out->{o})
                   . " is on its way. Track it here: https://example.com/t/"
                   . substr(md5_hex($out->{o}), 0, 10);
        print $seedf csv($out->{wamid}, uuid_of("$c->{pn}[0]:$c->{wa}"),
                        $c->{pn}[0], $c->{wa}, 'out', 'api', 'text',
                        ts_text($out->{at}), $text,
                        '{"type":"text","text":{"body":' . js($text) . '}}');
    }

    close $_ or die "write: $!" for $resp, $mcsv, $scsv, $seedf;

    my %seen;
    $seen{ $_->[2]{c}{wa} }++ for grep { $_->[1] eq 'in' } @events;
    printf "GEN inbound=%d statuses=%d outbound=%d customers=%d "
           . "bytes_avg=%d bytes_min=%d bytes_max=%d\n",
           $n_in, $n_st, scalar @outbound, scalar keys %seen,
           @events ? $bytes / @events : 0, $min, $max;
}

sub envelope {
    my ($waba, $pn, $value) = @_;
    return '{"object":"whatsapp_business_account","entry":[{"id":"' . $waba
         . '","changes":[{"value":{"messaging_product":"whatsapp",'
         . '"metadata":{"display_phone_number":"' . $pn->[1]
         . '","phone_number_id":"' . $pn->[0] . '"},' . $value
         . '},"field":"messages"}]}]}';
}


# --- the drain ----------------------------------------------------------------

sub redis_cmd {
    my ($sock, @args) = @_;
    print $sock resp(@args);
    return read_reply($sock);
}

sub read_reply {
    my ($sock) = @_;
    my $line = <$sock>;
    die "redis: connection closed\n" unless defined $line;
    $line =~ s/\r\n$//;
    my ($t, $v) = (substr($line, 0, 1), substr($line, 1));
    return $v if $t eq '+' || $t eq ':';
    return { error => $v } if $t eq '-';
    if ($t eq '$') {
        return undef if $v < 0;
        my $buf = '';
        read($sock, $buf, $v + 2) == $v + 2 or die "redis: short read\n";
        return substr($buf, 0, $v);
    }
    if ($t eq '*') {
        return undef if $v < 0;
        return [ map { read_reply($sock) } 1 .. $v ];
    }
    die "redis: unexpected reply $line\n";
}

sub rss_kb {
    my ($pid) = @_;
    open my $f, '<', "/proc/$pid/status" or return undef;
    while (my $line = <$f>) {     # not $_: callers map over pids
        return $1 if $line =~ /^VmRSS:\s+(\d+)/;
    }
    return undef;
}

sub alive {
    my ($pid) = @_;
    open my $f, '<', "/proc/$pid/stat" or return 0;
    my $s = <$f> // '';
    return $s =~ /\)\s+([A-Za-z])/ && $1 ne 'Z' && $1 ne 'X';
}

sub monitor {
    my ($port, $pids, $t0_ms, $n, $timeout) = @_;
    my @pids = split /,/, $pids;
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                     PeerPort => $port, Proto => 'tcp')
        or die "redis 127.0.0.1:$port: $!\n";
    $sock->autoflush(1);
    binmode $sock;

    my $t0 = $t0_ms / 1000;
    my (@rss, $next_rss, $next_note, $tick);
    $next_rss = $next_note = $tick = time;
    $next_note += 10;
    my ($end, $len);

    for (;;) {
        my $now = time;
        if ($now >= $next_rss) {
            push @rss, grep { defined } map { rss_kb($_) } @pids;
            $next_rss += 1;
        }
        if (my @dead = grep { !alive($_) } @pids) {
            print "DIED pid=@dead seconds=", sprintf('%.3f', $now - $t0), "\n";
            exit 2;
        }
        $len = redis_cmd($sock, 'XLEN', 'wa:events');
        if (!ref $len && $len == 0) {
            my $p = redis_cmd($sock, 'XPENDING', 'wa:events', 'workers');
            if (ref $p eq 'ARRAY' && $p->[0] == 0) {
                $end = time;
                last;
            }
        }
        if ($now >= $next_note) {
            my $left = ref $len ? $n : $len;
            printf STDERR "  %6.1f s: %7d left, %6.0f events/s so far,"
                          . " worker RSS %s kB\n", $now - $t0, $left,
                          ($n - $left) / ($now - $t0), $rss[-1] // '?';
            $next_note += 10;
        }
        if ($now - $t0 > $timeout) {
            print "TIMEOUT seconds=", sprintf('%.3f', $now - $t0),
                  " left=", (ref $len ? '?' : $len), "\n";
            exit 3;
        }
        $tick += 0.1;
        my $d = $tick - time;
        sleep $d if $d > 0;
    }

    push @rss, grep { defined } map { rss_kb($_) } @pids;
    my @sorted = sort { $a <=> $b } @rss;
    printf "DRAIN seconds=%.3f rss_min_kb=%d rss_max_kb=%d rss_first_kb=%d "
           . "rss_last_kb=%d rss_samples=%d\n", $end - $t0,
           $sorted[0] // 0, $sorted[-1] // 0, $rss[0] // 0, $rss[-1] // 0,
           scalar @rss;
}


# --- CPU accounting -------------------------------------------------------------

sub stat_fields {
    my ($pid) = @_;
    open my $f, '<', "/proc/$pid/stat" or return;
    my $s = <$f> // return;
    $s =~ s/^.*\)\s+//s;
    return split ' ', $s;     # [0] = state, [1] = ppid, [11..14] = times
}

# utime + stime of PID and its live children, plus what it reaped
sub cpu_seconds {
    my ($pid) = @_;
    my $hz = POSIX::sysconf(POSIX::_SC_CLK_TCK()) || 100;
    my @f = stat_fields($pid) or return 0;
    my $ticks = $f[11] + $f[12] + $f[13] + $f[14];
    opendir my $d, '/proc' or return $ticks / $hz;
    for my $p (grep { /^\d+$/ } readdir $d) {
        next if $p == $pid;
        my @c = stat_fields($p) or next;
        $ticks += $c[11] + $c[12] if $c[1] == $pid;
    }
    return $ticks / $hz;
}


# --- main ---------------------------------------------------------------------

my $cmd = shift // '';

if ($cmd eq 'gen') {
    gen(@ARGV);
} elsif ($cmd eq 'monitor') {
    monitor(@ARGV);
} elsif ($cmd eq 'cpu') {
    print join(' ', map { sprintf '%.2f', cpu_seconds($_) } @ARGV), "\n";
} else {
    die "usage: $0 gen DIR N SEED | monitor PORT PID T0_MS N TIMEOUT"
        . " | cpu PID...\n";
}
exit 0;
