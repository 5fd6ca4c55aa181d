package WaTest;

# Test harness: real NGINX (with the module), Redis and, later, PostgreSQL,
# each on a free loopback port in its own temp dir, stopped by pid.
#
#   my $redis = WaTest::Redis->start;
#   my $nginx = WaTest::Nginx->start(http => "whatsapp_redis ...;",
#                                    server => "location /w { ... }");
#   my $res = http_request($nginx->port, POST => '/w', $headers, $body);
#
# The module under test is $ENV{WA_MODULE}; with WA_ASAN=1 libasan is
# preloaded into NGINX and sanitizer reports fail the test.

use strict;
use warnings;

use Digest::SHA qw(hmac_sha256_hex);
use Exporter 'import';
use File::Spec;
use File::Temp ();
use IO::Select;
use IO::Socket::INET;
use Socket qw(SOL_SOCKET SO_LINGER);
use Time::HiRes qw(time sleep);

use WaTest::Nginx;
use WaTest::Postgres;
use WaTest::Worker;
use WaTest::Redis;

our @EXPORT = qw(free_port sign signed_post http_request http_raw
                 http_parallel wait_until run_cases fixture slurp
                 webhook_location temp_file messages_delivery);


# The usual webhook location; extra directives go inside it.
sub webhook_location {
    my (%o) = @_;
    my $secrets = join '', map { "whatsapp_app_secret $_; " }
                               @{ $o{secrets} // ['s3cret'] };
    return "location = /webhook { whatsapp_webhook; $secrets"
         . "whatsapp_verify_token " . ($o{token} // 'tok') . "; "
         . ($o{extra} // '') . " }";
}


# The absolute path of a build product, from $ENV{$var} or the default.
sub built {
    my ($var, $default) = @_;
    my $path = File::Spec->rel2abs($ENV{$var} // $default);
    die "$path is not built (make build, or set $var)" unless -f $path;
    return $path;
}


# A new file in $dir holding $text; its path.
sub temp_file {
    my ($dir, $text) = @_;
    my ($fh, $path) = File::Temp::tempfile(DIR => $dir);
    print {$fh} $text;
    close $fh or die "$path: $!";
    return $path;
}


# A whole file's bytes, or undef if it cannot be read.
sub slurp {
    my ($path) = @_;
    open my $f, '<:raw', $path or return undef;
    local $/;
    return scalar <$f>;
}


sub fixture {
    my ($name) = @_;
    return slurp("t/fixtures/$name") // die "fixture $name: $!";
}


# One Meta delivery, as t/fixtures/meta has them: a `messages` change of
# the test account for business number pn, its value's other members
# (contacts, messages, statuses) given.  The structure, to encode.
sub messages_delivery {
    my ($pn, %value) = @_;
    return {
        object => 'whatsapp_business_account',
        entry => [ { id => '102290129340398', changes => [ {
            field => 'messages',
            value => { messaging_product => 'whatsapp',
                       metadata => { display_phone_number => '15550783881',
                                     phone_number_id => $pn },
                       %value } } ] } ] };
}


# Data-driven request/response cases:
#   { name, method, path, headers, body | raw,
#     status, body_is, body_like, header => { name => value | qr// } }
sub run_cases {
    my ($port, @cases) = @_;
    for my $c (@cases) {
        my $res = http_request($port, $c->{method} // 'GET', $c->{path},
                               $c->{headers}, $c->{body},
                               $c->{raw} ? (raw => $c->{raw}) : ());
        Test::More::is($res->{status}, $c->{status}, "$c->{name}: status")
            or Test::More::diag($res->{raw});
        Test::More::is($res->{body}, $c->{body_is}, "$c->{name}: body")
            if exists $c->{body_is};
        Test::More::like($res->{body}, $c->{body_like}, "$c->{name}: body")
            if exists $c->{body_like};
        for my $h (sort keys %{ $c->{header} // {} }) {
            my $want = $c->{header}{$h};
            my $got = $res->{headers}{lc $h};
            ref $want ? Test::More::like($got, $want, "$c->{name}: $h")
                      : Test::More::is($got, $want, "$c->{name}: $h");
        }
    }
}


# a server going away must fail a request, not kill the test
$SIG{PIPE} = 'IGNORE';

# interrupted: exit normally so every started server is stopped (DESTROY)
$SIG{INT} = $SIG{TERM} = sub { exit 130 };

my %taken;

# A port nobody listens on; remembered so two servers never get the same.
sub free_port {
    for (1 .. 100) {
        my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1',
                                      LocalPort => 0, ReuseAddr => 0)
            or die "cannot bind a free port: $!";
        my $port = $s->sockport;
        close $s;
        next if $taken{$port}++;
        return $port;
    }
    die "no free port";
}


sub sign {
    my ($secret, $body) = @_;
    return 'sha256=' . hmac_sha256_hex($body, $secret);
}


# A complete POST request with Meta's signature header.
sub signed_post {
    my ($path, $secret, $body, %extra) = @_;
    my $headers = { 'Content-Type' => 'application/json',
                    'X-Hub-Signature-256' => sign($secret, $body),
                    %extra };
    return http_raw('POST', $path, $headers, $body);
}


sub http_raw {
    my ($method, $path, $headers, $body) = @_;
    $headers //= {};
    $body //= '';
    my $req = "$method $path HTTP/1.1\r\nHost: localhost\r\n"
            . "Connection: close\r\n";
    $req .= "$_: $headers->{$_}\r\n" for sort keys %$headers;
    $req .= "Content-Length: " . length($body) . "\r\n"
        if length $body || $method eq 'POST';
    return $req . "\r\n" . $body;
}


sub parse_response {
    my ($raw) = @_;
    return { status => 0, raw => $raw } unless defined $raw && length $raw;
    my ($head, $body) = split /\r\n\r\n/, $raw, 2;
    my ($status_line, @lines) = split /\r\n/, $head;
    my ($status) = $status_line =~ m{^HTTP/1\.\d (\d{3})};
    my %h;
    for (@lines) {
        my ($k, $v) = /^([^:]+):\s*(.*)$/ or next;
        $h{lc $k} = $v;
    }
    return { status => $status // 0, headers => \%h, body => $body // '',
             raw => $raw };
}


# One request, blocking, with a deadline; returns {status, headers, body}.
sub http_request {
    my ($port, $method, $path, $headers, $body, %o) = @_;
    my $raw = $o{raw} // http_raw($method, $path, $headers, $body);
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Timeout => 5)
        or return { status => 0, error => "$!" };
    my $t0 = time;
    print {$s} $raw;
    my $deadline = time + ($o{timeout} // 10);
    my $sel = IO::Select->new($s);
    my $in = '';
    while (time < $deadline) {
        last unless $sel->can_read($deadline - time);
        my $n = sysread $s, $in, 65536, length $in;
        last unless $n;
    }
    close $s;
    my $res = parse_response($in);
    $res->{elapsed} = time - $t0;
    return $res;
}


# Many raw requests at once over non-blocking sockets; returns the parsed
# responses in request order.
sub http_parallel {
    my ($port, $reqs, %o) = @_;
    my (@conns, %by_fd);
    my ($rsel, $wsel) = (IO::Select->new, IO::Select->new);

    for my $i (0 .. $#$reqs) {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                      PeerPort => $port, Blocking => 0);
        my $c = { sock => $s, out => $reqs->[$i], in => '', i => $i };
        push @conns, $c;
        next unless $s;                  # refused: status 0
        $by_fd{fileno $s} = $c;
        $wsel->add($s);
    }

    my $deadline = time + ($o{timeout} // 60);
    while (($rsel->count || $wsel->count) && time < $deadline) {
        my ($r, $w) = IO::Select->select($rsel, $wsel, undef, 0.5);
        for my $s (@{ $w // [] }) {
            my $c = $by_fd{fileno $s};
            my $n = syswrite $s, $c->{out};
            if (!defined $n) {
                next if $!{EAGAIN};
                $wsel->remove($s);       # refused or reset: status 0
                close $s;
                next;
            }
            substr($c->{out}, 0, $n) = '';
            next if length $c->{out};
            $wsel->remove($s);
            $rsel->add($s);
        }
        for my $s (@{ $r // [] }) {
            my $c = $by_fd{fileno $s};
            my $n = sysread $s, $c->{in}, 65536, length $c->{in};
            next if !defined $n && $!{EAGAIN};
            next if $n;
            $rsel->remove($s);
            close $s;
        }
    }

    return [ map { parse_response($_->{in}) } @conns ];
}


# A test that no sanitizer report was written in $dir (files $pattern),
# those found shown.
sub check_sanitizer {
    my ($dir, $pattern, $name) = @_;
    my @bad;
    for my $f (glob "$dir/$pattern") {
        my $text = slurp($f) // '';
        push @bad, "$f:\n$text" if $text =~ /ERROR: |runtime error:/;
    }
    Test::More::ok(!@bad, "$name: no sanitizer report")
        or Test::More::diag(join "\n", @bad);
}


sub wait_until {
    my ($cond, $timeout) = @_;
    my $deadline = time + ($timeout // 10);
    while (time < $deadline) {
        return 1 if $cond->();
        sleep 0.05;
    }
    return 0;
}

1;
