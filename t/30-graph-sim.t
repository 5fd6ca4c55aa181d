# wa-graph-sim: the local WhatsApp Cloud API that tests, `make run` and the
# send benchmark talk to.  Its answers and webhooks are held against Meta's
# own payloads (t/fixtures/graph).
use strict;
use warnings;

use Digest::SHA qw(hmac_sha256_hex);
use File::Temp qw(tempdir);
use IO::Select;
use IO::Socket::INET;
use JSON::PP;
use MIME::Base64 qw(decode_base64);
use POSIX ();
use Test::More;
use Time::HiRes qw(time sleep);

use WaTest;
use WaTest::GraphSim;

my $JSON = JSON::PP->new->canonical;
my $PNID = '106540352242922';
my $TO = '+1 (650) 555-1234';
my $SECRET = 'test-app-secret';

my @receivers;

END {
    local $?;
    for my $r (@receivers) {
        kill 'KILL', $r->{pid};
        waitpid $r->{pid}, 0;
    }
}


# -------------------------------------------------------------- helpers

sub meta { decode_json(fixture("graph/$_[0]")) }

# Keys and nesting of a JSON value; arrays by their first element.
sub shape {
    my ($v) = @_;
    return { map { $_ => shape($v->{$_}) } keys %$v } if ref $v eq 'HASH';
    return @$v ? [ shape($v->[0]) ] : [] if ref $v eq 'ARRAY';
    return JSON::PP::is_bool($v) ? 'bool' : 'value';
}

sub text_send {
    my (%o) = @_;
    return { messaging_product => 'whatsapp', recipient_type => 'individual',
             to => $TO, type => 'text', text => { body => 'hello' }, %o };
}

sub raw_request {
    my ($path, $body, %h) = @_;
    my %headers = ('Content-Type' => 'application/json',
                   Authorization => 'Bearer tok', %h);
    delete $headers{$_} for grep { !defined $headers{$_} } keys %headers;
    my $req = "POST $path HTTP/1.1\r\nHost: localhost\r\n";
    $req .= "$_: $headers{$_}\r\n" for sort keys %headers;
    return $req . "Content-Length: " . length($body) . "\r\n\r\n$body";
}

# Reads responses (Content-Length framed) from a socket until $n arrived.
sub read_responses {
    my ($s, $n, $timeout) = @_;
    my ($in, @out) = ('');
    my $sel = IO::Select->new($s);
    my $deadline = time + ($timeout // 10);
    while (@out < $n && time < $deadline) {
        while ($in =~ /\A(HTTP\/1\.1 (\d+)[^\r]*\r\n(.*?)\r\n\r\n)/s) {
            my ($head, $status, $hdrs) = ($1, $2, $3);
            my ($len) = $hdrs =~ /^Content-Length:\s*(\d+)/mi;
            last if length($in) < length($head) + $len;
            substr($in, 0, length $head, '');
            push @out, { status => $status, body => substr($in, 0, $len, ''),
                         at => time };
        }
        last if @out >= $n || !$sel->can_read($deadline - time);
        sysread($s, $in, 65536, length $in) or last;
    }
    return @out;
}

sub error_ok {
    my ($res, $code, $http, $name, $type) = @_;
    is($res->{status}, $http, "$name: HTTP $http");
    my $e = $res->{json} && $res->{json}{error};
    ok($e, "$name: Meta's error envelope") or return diag($res->{content});
    is($e->{code}, $code, "$name: code $code");
    is($e->{type}, $type // 'OAuthException', "$name: type");
    like($e->{fbtrace_id}, qr/^[A-Za-z0-9_-]{20,}$/, "$name: fbtrace_id");
    return $e;
}


# A webhook receiver: a forked HTTP/1.1 server (keep-alive, several
# connections) saving each request to $dir/NNNNNN and answering the
# statuses in @answers in turn, then 200.
sub receiver {
    my (@answers) = @_;
    my $dir = tempdir('wa-receiver-XXXXXX', TMPDIR => 1, CLEANUP => 1);
    my $port = free_port();
    my $listen = IO::Socket::INET->new(Listen => 16, LocalAddr => '127.0.0.1',
                                       LocalPort => $port, ReuseAddr => 1)
        or die "receiver: $!";
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        $SIG{TERM} = $SIG{INT} = 'DEFAULT';
        my $sel = IO::Select->new($listen);
        my (%buf, $n);
        for (;;) {
            for my $s ($sel->can_read) {
                if ($s == $listen) {
                    my $c = $listen->accept or next;
                    $sel->add($c);
                    $buf{fileno $c} = '';
                    next;
                }
                my $b = \$buf{fileno $s};
                if (!sysread($s, $$b, 65536, length $$b)) {
                    $sel->remove($s);
                    delete $buf{fileno $s};
                    close $s;
                    next;
                }
                while ($$b =~ /\A(.*?\r\n\r\n)/s) {
                    my $head = $1;
                    my ($len) = $head =~ /^Content-Length:\s*(\d+)/mi;
                    last if length($$b) < length($head) + ($len // 0);
                    my $req = substr($$b, 0, length($head) + ($len // 0), '');
                    my $file = sprintf '%s/%06d', $dir, ++$n;
                    open my $f, '>:raw', "$file.tmp" or die;
                    print {$f} $req;
                    close $f;
                    rename "$file.tmp", $file;
                    my $status = shift(@answers) // 200;
                    syswrite $s, "HTTP/1.1 $status X\r\nContent-Type: "
                               . "text/plain\r\nContent-Length: 2\r\n\r\nok";
                }
            }
        }
    }
    close $listen;
    my $r = { pid => $pid, port => $port, dir => $dir,
              url => "http://127.0.0.1:$port/webhook" };
    push @receivers, $r;
    return $r;
}

# The POSTs received so far: [{line, headers, body, json}]
sub received {
    my ($r) = @_;
    my @out;
    for my $file (sort glob "$r->{dir}/0*") {
        next if $file =~ /\.tmp$/;
        my ($head, $body) = split /\r\n\r\n/, slurp($file), 2;
        my ($line, @lines) = split /\r\n/, $head;
        my %h = map { /^([^:]+):\s*(.*)$/ ? (lc $1 => $2) : () } @lines;
        push @out, { line => $line, headers => \%h, body => $body,
                     json => eval { decode_json($body) } };
    }
    return \@out;
}

# Every status received, in arrival order.
sub statuses {
    my ($r) = @_;
    return [ map { @{ $_->{json}{entry}[0]{changes}[0]{value}{statuses} } }
             @{ received($r) } ];
}

sub wait_statuses {
    my ($r, $n, $timeout) = @_;
    wait_until(sub { @{ statuses($r) } >= $n }, $timeout // 10);
    return statuses($r);
}


# ------------------------------------------------- sends, no webhooks

my $sim = WaTest::GraphSim->new->start;

{
    my $res = $sim->send_message($PNID, text_send());
    is($res->{status}, 200, 'text send: 200');
    is_deeply(shape($res->{json}), shape(meta('success_send_text.json')),
              "text send: Meta's success shape");
    is($res->{json}{contacts}[0]{input}, $TO, 'contacts[0].input as given');
    is($res->{json}{contacts}[0]{wa_id}, '16505551234', 'wa_id: its digits');
    my $wamid = $res->{json}{messages}[0]{id};
    like($wamid, qr{^wamid\.[A-Za-z0-9+/]+=*$}, "wamid: Meta's form");
    my $raw = decode_base64(substr $wamid, 6);
    like($raw, qr/^\x1c\x18\x0b16505551234\x15\x02\x00\x11\x18\x12
                  [0-9A-F]{18}\x00$/x,
         "wamid: Meta's record of the recipient and a unique id");
    ok(!exists $res->{json}{messages}[0]{message_status},
       'no message_status on a plain send');
    like($res->{headers}{'content-type'}, qr{^application/json},
         'answered as JSON');

    my %seen;
    $seen{ $sim->send_message($PNID, text_send())->{json}{messages}[0]{id} }++
        for 1 .. 200;
    is(scalar keys %seen, 200, '200 sends: 200 distinct wamids');

    my $body = text_send();
    delete $body->{type};
    $res = $sim->send_message($PNID, $body);
    is($res->{status}, 200, 'no type: a text message, as Meta defaults');

    $res = $sim->send_message($PNID, { messaging_product => 'whatsapp',
        to => '16505551234', type => 'template',
        template => { name => 'hello_world', language => { code => 'en_US' } }
    });
    is($res->{status}, 200, 'template send: 200');
    is_deeply(shape($res->{json}),
              shape(meta('success_send_marketing_template_accepted.json')),
              'template send: message_status, as Meta answers');
    is($res->{json}{messages}[0]{message_status}, 'accepted',
       'template: accepted');

    $res = $sim->send_message($PNID, { messaging_product => 'whatsapp',
        status => 'read', message_id => 'wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQ' });
    is($res->{status}, 200, 'read receipt: 200');
    is_deeply($res->{json}, meta('success_mark_read.json'),
              'read receipt: {"success":true}');
}

# validation: [name, body, code, HTTP status, message or details]
my $long = 'x' x 4097;
my @invalid = (
    [ 'no messaging_product', { to => $TO, type => 'text',
          text => { body => 'a' } }, 100, 400,
      message => '(#100) The parameter messaging_product is required.' ],
    [ 'messaging_product sms', text_send(messaging_product => 'sms'),
      100, 400, details => qr/messaging_product/ ],
    [ 'no to', { messaging_product => 'whatsapp', type => 'text',
          text => { body => 'a' } }, 100, 400,
      message => 'The parameter to is required.' ],
    [ 'to not a number', text_send(to => 'someone'), 131009, 400,
      details => qr/Param to/ ],
    [ 'unknown type', text_send(type => 'hologram', hologram => {}),
      131051, 400, message => '(#131051) Unsupported message type' ],
    [ 'no text object', { messaging_product => 'whatsapp', to => $TO,
          type => 'text' }, 131008, 400,
      message => '(#131008) Required parameter is missing',
      details => qr/text/ ],
    [ 'no text body', text_send(text => { preview_url => JSON::PP::true }),
      131008, 400, details => qr/text\['body'\]/ ],
    [ 'text over 4096', text_send(text => { body => $long }), 131009, 400,
      message => '(#131009) Parameter value is not valid',
      details => qr/4096/ ],
    [ 'image without id or link', text_send(type => 'image',
          image => { caption => 'c' }), 131008, 400, details => qr/image/ ],
    [ 'image with id and link', text_send(type => 'image',
          image => { id => '1', link => 'https://example.com/a.png' }),
      131009, 400, details => qr/image/ ],
    [ 'document without either', text_send(type => 'document',
          document => { filename => 'a.pdf' }), 131008, 400 ],
    [ 'template without name', text_send(type => 'template',
          template => { language => { code => 'en' } }), 131008, 400,
      details => qr/template\['name'\]/ ],
    [ 'template without language code', text_send(type => 'template',
          template => { name => 'x', language => {} }), 131008, 400,
      details => qr/language/ ],
    [ 'interactive without type', text_send(type => 'interactive',
          interactive => { body => { text => 'b' } }), 131008, 400 ],
    [ 'interactive of unknown type', text_send(type => 'interactive',
          interactive => { type => 'hologram' }), 131009, 400,
      details => qr/interactive\['type'\]/ ],
    [ 'reaction without message_id', text_send(type => 'reaction',
          reaction => { emoji => "\x{1F600}" }), 131008, 400 ],
    [ 'location without longitude', text_send(type => 'location',
          location => { latitude => '37.4' }), 131008, 400 ],
    [ 'contacts empty', text_send(type => 'contacts', contacts => []),
      131008, 400 ],
    [ 'read receipt without message_id', { messaging_product => 'whatsapp',
          status => 'read' }, 100, 400,
      message => '(#100) The parameter message_id is required.' ],
    [ 'not JSON', '{"messaging_product":"whatsapp",', 100, 400,
      message => '(#100) The parameter messaging_product is required.' ],
);

for my $c (@invalid) {
    my ($name, $body, $code, $http, %want) = @$c;
    my $e = error_ok($sim->send_message($PNID, $body), $code, $http, $name)
        or next;
    is($e->{message}, $want{message}, "$name: message") if $want{message};
    if ($code >= 131000) {
        is($e->{error_data}{messaging_product}, 'whatsapp',
           "$name: error_data");
        like($e->{error_data}{details}, $want{details} // qr/\S/,
             "$name: details");
    }
}

for my $ok (
    [ 'text of 4096 characters (multi-byte)',
      text_send(text => { body => "\x{e9}" x 4096 }) ],
    [ 'video by link', text_send(type => 'video',
          video => { link => 'https://example.com/v.mp4' }) ],
    [ 'interactive button', text_send(type => 'interactive',
          interactive => { type => 'button', body => { text => 'b' },
                           action => { buttons => [] } }) ],
    [ 'reaction', text_send(type => 'reaction',
          reaction => { message_id => 'wamid.X', emoji => "\x{1F600}" }) ],
    [ 'business-scoped user id', text_send(to => 'US.13491208655302741918') ],
) {
    my $res = $sim->send_message($PNID, $ok->[1]);
    is($res->{status}, 200, "$ok->[0]: 200") or diag($res->{content});
}

{
    my $res = $sim->send_message($PNID,
                                 text_send(to => 'US.13491208655302741918'));
    is_deeply($res->{json}{contacts},
              [ { input => 'US.13491208655302741918',
                  user_id => 'US.13491208655302741918' } ],
              'a BSUID recipient: user_id, no wa_id (as Meta)');

    $res = $sim->send_message($PNID, text_send(), token => undef);
    my $e = error_ok($res, 104, 400, 'no token');
    is($e->{message}, 'An access token is required to request this resource.',
       "no token: Meta's message");
    like($res->{headers}{'www-authenticate'}, qr/^OAuth "Facebook Platform"/,
         'no token: WWW-Authenticate');

    $res = $sim->send_message($PNID, text_send(), token => undef,
                              headers => { Authorization => 'Basic eDp5' });
    error_ok($res, 190, 401, 'not a bearer token');

    $res = $sim->send_message($PNID, text_send(), token => undef,
                              headers => { Authorization => 'Bearer ' });
    error_ok($res, 190, 401, 'empty bearer token');

    $res = $sim->send_message($PNID, encode_json(text_send()),
                              headers => { 'Content-Type' => 'text/plain' });
    $e = error_ok($res, 100, 400, 'not application/json');
    is($e->{message}, '(#100) The parameter messaging_product is required.',
       'not application/json: Meta reads no parameters');

    $res = $sim->send_message('not-an-id', text_send());
    $e = error_ok($res, 100, 400, 'a phone number id that is not one',
                  'GraphMethodException');
    like($e->{message},
         qr/^Unsupported post request\. Object with ID 'not-an-id'/,
         "wrong id: Graph's message");

    $res = http_request($sim->port, 'GET', "/v21.0/$PNID/messages",
                        { Authorization => 'Bearer tok' });
    is($res->{status}, 400, 'GET: 400');
    like($res->{body}, qr/Unsupported get request.*"error_subcode":33/,
         'GET: unsupported get request');

    $res = http_request($sim->port, 'POST', "/v21.0/$PNID/media",
                        { Authorization => 'Bearer tok' }, '{}');
    like($res->{body}, qr/"code":2500/, 'unknown path: code 2500');
}


# --------------------------------------------------------------- HTTP

{
    my $path = "/v21.0/$PNID/messages";
    my $body = encode_json(text_send());
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => $sim->port) or die $!;
    # three requests in one write, the second split from the third mid-way
    my $three = join '', map { raw_request($path, $body) } 1 .. 3;
    syswrite $s, substr($three, 0, length($three) - 10);
    sleep 0.1;
    syswrite $s, substr($three, -10);
    my @r = read_responses($s, 3);
    is(scalar(@r), 3, 'pipelined: three answers on one connection');
    is_deeply([ map { $_->{status} } @r ], [ 200, 200, 200 ],
              'pipelined: all 200');

    my %ids = map { (decode_json($_->{body})->{messages}[0]{id} => 1) } @r;
    is(scalar keys %ids, 3, 'pipelined: three messages');

    my $res = http_request($sim->port, 'POST', $path,
        undef, undef, raw => "POST $path HTTP/1.1\r\nHost: x\r\n"
        . "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
    is($res->{status}, 411, 'chunked body: 411');

    $res = http_request($sim->port, 'POST', $path, undef, undef,
        raw => "POST $path HTTP/1.1\r\nHost: x\r\n\r\n");
    is($res->{status}, 411, 'POST without Content-Length: 411');

    $res = http_request($sim->port, 'GET', '/', undef, undef,
                        raw => "NONSENSE\r\n\r\n");
    is($res->{status}, 400, 'not HTTP: 400');
}


# -------------------------------------------------------------- rules

{
    my $victim = '15550001111';
    $sim->add_rule({ match => { to => $victim }, times => 1,
                     error => { code => 131047 } });

    my $res = $sim->send_message($PNID, text_send());
    is($res->{status}, 200, 'error rule: another recipient unaffected');

    $res = $sim->send_message($PNID, text_send(to => "+$victim"));
    my $e = error_ok($res, 131047, 400, 'error rule (to, as +digits)');
    is($e->{message}, '(#131047) Re-engagement message',
       "error rule: Meta's title");
    like($e->{error_data}{details}, qr/24 hours/, "error rule: Meta's details");

    $res = $sim->send_message($PNID, text_send(to => $victim));
    is($res->{status}, 200, 'error rule: times 1, used up');

    $sim->add_rule({ times => 1, error => { code => 130429 } });
    $res = $sim->send_message($PNID, text_send());
    error_ok($res, 130429, 400, '130429');
    is_deeply(shape($res->{json}), shape(meta('error_130429_rate_limit.json')),
              "130429: Meta's envelope, error_subcode included");

    $sim->add_rule({ times => 1, error => { code => 133010 } });
    $res = $sim->send_message($PNID, text_send());
    is_deeply(shape($res->{json}),
              shape(meta('error_133010_account_not_registered.json')),
              '133010: no error_data, as captured from Meta');

    $sim->add_rule({ times => 1, error => { code => 131000, http_status => 502,
                                            details => 'boom' } });
    $e = error_ok($sim->send_message($PNID, text_send()), 131000, 502,
                  'error rule with http_status and details');
    is($e->{error_data}{details}, 'boom', 'error rule: details given');

    $sim->add_rule({ times => 1, error => { code => 131000 } });
    error_ok($sim->send_message($PNID, text_send()), 131000, 500,
             "131000: Meta's HTTP 500");

    $sim->add_rule({ times => 1, error => { code => 190 } });
    $e = error_ok($sim->send_message($PNID, text_send()), 190, 401,
                  'expired token');
    like($e->{message}, qr/^Error validating access token: Session has expired/,
         'expired token: no "(#190)", as Meta');
    is($e->{error_subcode}, 463, 'expired token: subcode 463');

    # match keys
    $sim->add_rule({ match => { phone_number_id => '999' },
                     error => { code => 131031 } });
    $sim->add_rule({ match => { token => 'bad' }, error => { code => 0 } });
    $sim->add_rule({ match => { type => 'image' },
                     error => { code => 131053 } });
    is($sim->send_message($PNID, text_send())->{status}, 200,
       'match keys: a request none matches');
    error_ok($sim->send_message('999', text_send()), 131031, 403,
             'match phone_number_id');
    error_ok($sim->send_message($PNID, text_send(), token => 'bad'), 0, 401,
             'match token');
    error_ok($sim->send_message($PNID, text_send(type => 'image',
                 image => { id => '1' })), 131053, 400, 'match type');
    $sim->clear_rules;

    # times counting down; the first rule with times left wins
    $sim->add_rule({ times => 2, error => { code => 131048 } });
    $sim->add_rule({ times => 1, error => { code => 131056 } });
    my @codes = map {
        my $r = $sim->send_message($PNID, text_send());
        $r->{json}{error} ? $r->{json}{error}{code} : $r->{status}
    } 1 .. 4;
    is_deeply(\@codes, [ 131048, 131048, 131056, 200 ],
              'times: 2 then the next rule once, then none');
    is($sim->stats->{rules}, 2, 'used-up rules stay until cleared');
    $sim->clear_rules;

    # a proxy 5xx
    $sim->add_rule({ times => 1, http_status => 503 });
    $res = $sim->send_message($PNID, text_send());
    is($res->{status}, 503, 'http_status rule: 503');
    like($res->{headers}{'content-type'}, qr{^text/html},
         'http_status rule: not JSON');
    ok(!eval { decode_json($res->{content}); 1 }, 'http_status rule: no JSON');

    # drop: the connection closes, no answer
    $sim->add_rule({ times => 1, drop => 'close' });
    $res = http_request($sim->port, 'POST', "/v21.0/$PNID/messages",
                        { 'Content-Type' => 'application/json',
                          Authorization => 'Bearer tok' },
                        encode_json(text_send()));
    is($res->{status}, 0, 'drop rule: closed without an answer');
    ok($res->{elapsed} < 2, 'drop rule: closed at once');
    is($sim->send_message($PNID, text_send())->{status}, 200,
       'drop rule: times 1, used up');

    # delay: that connection waits, another does not
    $sim->add_rule({ match => { to => '15550002222' }, times => 2,
                     delay_ms => 800 });
    my $path = "/v21.0/$PNID/messages";
    my $slow = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                     PeerPort => $sim->port) or die $!;
    my $t0 = time;
    # the delayed request, and one pipelined behind it on the same connection
    syswrite $slow, raw_request($path, encode_json(text_send(
                                    to => '15550002222')))
                  . raw_request($path, encode_json(text_send()));
    sleep 0.05;
    $res = $sim->send_message($PNID, text_send());
    my $fast = time - $t0;
    is($res->{status}, 200, 'delay rule: another connection answered');
    ok($fast < 0.5, "delay rule: ... without waiting (${fast}s)");
    my @r = read_responses($slow, 2);
    is_deeply([ map { $_->{status} } @r ], [ 200, 200 ],
              'delay rule: answered normally, in order');
    ok(@r == 2 && $r[0]{at} - $t0 >= 0.75,
       'delay rule: after the delay') or diag($r[0]{at} - $t0);
    like($r[0]{body} // '', qr/"wa_id":"15550002222"/,
         'delay rule: the delayed answer first');

    $res = http_request($sim->port, 'POST', '/_sim/rules',
        { 'Content-Type' => 'application/json' },
        encode_json({ drop => 'close', delay_ms => 5 }));
    is($res->{status}, 400, 'a rule with two actions: 400');
    $res = http_request($sim->port, 'POST', '/_sim/rules',
        { 'Content-Type' => 'application/json' },
        encode_json({ match => { from => 'x' }, drop => 'close' }));
    is($res->{status}, 400, 'a rule with an unknown match key: 400');
    $sim->clear_rules;
}


# ------------------------------------------------------ request log

{
    $sim->clear_requests;
    is_deeply($sim->requests, [], 'requests: empty after DELETE');

    my $t0 = int(time * 1000);
    my @sent = (
        [ $PNID, text_send(biz_opaque_callback_data => "a/b \x{fc}"), {} ],
        [ '1234', text_send(), { token => undef } ],
        [ $PNID, '{"messaging_product":', {} ],
        [ $PNID, text_send(type => 'template', template => { name => 'n',
              language => { code => 'en' } }), { version => 'v24.0',
              token => 'tok-2' } ],
    );
    my @res = map { $sim->send_message($_->[0], $_->[1], %{ $_->[2] }) } @sent;
    my $t1 = int(time * 1000) + 1;

    my $log = $sim->requests;
    is(scalar @$log, 4, 'requests: every /messages request');
    for my $i (0 .. $#sent) {
        my ($pnid, $body, $o) = @{ $sent[$i] };
        my $r = $log->[$i] or next;
        is($r->{phone_number_id}, $pnid, "request $i: phone_number_id");
        is($r->{version}, $o->{version} // 'v21.0', "request $i: version");
        is($r->{authorization},
           exists $o->{token} && !defined $o->{token}
               ? undef : 'Bearer ' . ($o->{token} // 'tok'),
           "request $i: authorization as sent");
        is_deeply($r->{body}, $body, "request $i: body as sent");
        is($r->{http_status}, $res[$i]{status}, "request $i: http_status");
        is($r->{wamid}, $res[$i]{json}{messages}
                        ? $res[$i]{json}{messages}[0]{id} : undef,
           "request $i: wamid");
        ok($r->{t_ms} >= $t0 && $r->{t_ms} <= $t1, "request $i: t_ms");
    }

    my $s = $sim->stats;
    ok($s->{requests} > 0 && $s->{requests} == $s->{accepted} + $s->{errors},
       'stats: requests = accepted + errors');
}


# --------------------------------------------------- status webhooks

my $rcv = receiver();
my $hook = WaTest::GraphSim->new(webhook => $rcv->{url},
                                 app_secret => $SECRET)->start;
{
    my $opaque = "order-17/\x{fc}ber";
    my $text = $hook->send_message($PNID,
        text_send(biz_opaque_callback_data => $opaque));
    my $tpl = $hook->send_message($PNID, text_send(to => '16505550000',
        type => 'template',
        template => { name => 'n', language => { code => 'en' } }));
    is($text->{status}, 200, 'webhook sim: text accepted');
    my $w1 = $text->{json}{messages}[0]{id};
    my $w2 = $tpl->{json}{messages}[0]{id};

    my $st = wait_statuses($rcv, 6);
    is(scalar @$st, 6, 'three statuses for each of two messages');

    my $posts = received($rcv);
    for my $p (@$posts) {
        like($p->{line}, qr{^POST /webhook HTTP/1\.1$}, 'POST to the URL path');
        is($p->{headers}{'content-type'}, 'application/json',
           'Content-Type: application/json');
        is($p->{headers}{'x-hub-signature-256'},
           'sha256=' . hmac_sha256_hex($p->{body}, $SECRET),
           'X-Hub-Signature-256: HMAC-SHA256 of the exact body');
        is($p->{headers}{'content-length'}, length $p->{body},
           'Content-Length');
        my $v = $p->{json}{entry}[0]{changes}[0]{value};
        is($p->{json}{object}, 'whatsapp_business_account', 'object');
        is($p->{json}{entry}[0]{changes}[0]{field}, 'messages', 'field');
        is($v->{metadata}{phone_number_id}, $PNID, 'metadata.phone_number_id');
        is_deeply([ sort keys %{ $v->{metadata} } ],
                  [ 'display_phone_number', 'phone_number_id' ], 'metadata');
        like($p->{body}, qr/"timestamp":"\d+"/, 'timestamps are strings');
    }

    my %by;
    push @{ $by{ $_->{id} } }, $_ for @$st;
    is_deeply([ map { $_->{status} } @{ $by{$w1} } ],
              [ 'sent', 'delivered', 'read' ], 'text: sent, delivered, read');
    is_deeply([ map { $_->{status} } @{ $by{$w2} } ],
              [ 'sent', 'delivered', 'read' ], 'template: in order too');

    is_deeply([ map { $_->{biz_opaque_callback_data} } @{ $by{$w1} } ],
              [ ($opaque) x 3 ], 'biz_opaque_callback_data echoed');
    ok(!grep({ exists $_->{biz_opaque_callback_data} } @{ $by{$w2} }),
       'no biz_opaque_callback_data when none was sent');
    like(join('', map { $_->{body} } @$posts), qr/order-17\\\/\\u00fcber/,
         'escaped as Meta does: \/ and \u00fc');
    is($by{$w1}[0]{recipient_id}, '16505551234', 'recipient_id: the wa_id');
    ok($by{$w1}[0]{timestamp} =~ /^\d+$/
       && abs($by{$w1}[0]{timestamp} - time) < 60, 'timestamp: now');

    # shapes: Meta's documented sent (template, before v24) and delivered
    my $meta_sent = meta('status_sent_pmp_conversation.json');
    my $meta_value = $meta_sent->{entry}[0]{changes}[0]{value};
    is_deeply(shape($by{$w2}[0]), shape($meta_value->{statuses}[0]),
              "sent: the shape of Meta's sent status");
    my $plain = decode_json($posts->[0]{body});
    delete $_->{biz_opaque_callback_data}
        for @{ $plain->{entry}[0]{changes}[0]{value}{statuses} };
    is_deeply(shape($plain), shape($meta_sent),
              "the envelope of Meta's status webhook");
    is_deeply($by{$w2}[0]{pricing}, $meta_value->{statuses}[0]{pricing},
              'template: billable marketing pricing');
    is($by{$w2}[0]{conversation}{origin}{type}, 'marketing',
       'template: marketing conversation');
    is_deeply($by{$w1}[0]{pricing}, meta('status_sent_real_2026.json')
                  ->{entry}[0]{changes}[0]{value}{statuses}[0]{pricing},
              'text: free service pricing, as Meta today');
    ok($by{$w1}[0]{conversation}{expiration_timestamp},
       'sent: conversation with its expiration');
    is_deeply([ sort keys %{ $by{$w1}[1]{conversation} } ], [ 'id', 'origin' ],
              'delivered: conversation without expiration');
    ok($by{$w1}[1]{pricing}, 'delivered: pricing');
    ok(!exists $by{$w1}[2]{conversation} && !exists $by{$w1}[2]{pricing},
       'read: neither conversation nor pricing');
    my $meta_opaque = meta('status_biz_opaque_callback_data.json')
                          ->{entry}[0]{changes}[0]{value}{statuses}[0];
    is_deeply([ sort keys %{ $by{$w1}[0] } ], [ sort keys %$meta_opaque ],
              "sent with biz_opaque_callback_data: Meta's keys");

    # v24.0: no conversation; a reaction: only sent
    my $v24 = $hook->send_message($PNID, text_send(), version => 'v24.0');
    my $react = $hook->send_message($PNID, text_send(type => 'reaction',
        reaction => { message_id => $w1, emoji => "\x{1F44D}" }));
    $st = wait_statuses($rcv, 10);
    %by = ();
    push @{ $by{ $_->{id} } }, $_ for @$st;
    my $w3 = $v24->{json}{messages}[0]{id};
    my $w4 = $react->{json}{messages}[0]{id};
    is(scalar @{ $by{$w3} // [] }, 3, 'v24.0: three statuses');
    ok(!grep({ exists $_->{conversation} } @{ $by{$w3} }),
       'v24.0: no conversation, as Meta since v24');
    is_deeply([ sort keys %{ $by{$w3}[0] } ],
              [ qw(id pricing recipient_id status timestamp) ],
              'v24.0 sent: id, status, timestamp, recipient_id, pricing');
    sleep 0.2;
    is_deeply([ map { $_->{status} } grep { $_->{id} eq $w4 }
                @{ statuses($rcv) } ],
              [ 'sent' ], 'a reaction: only sent, as Meta');

    # async_fail: accepted, then a failed status with Meta's error object
    $hook->add_rule({ times => 1, async_fail => { code => 131049 } });
    my $f = $hook->send_message($PNID, text_send());
    is($f->{status}, 200, 'async_fail: accepted');
    my $w5 = $f->{json}{messages}[0]{id};
    ok($w5, 'async_fail: with a wamid');
    wait_until(sub { grep { $_->{id} eq $w5 } @{ statuses($rcv) } }, 10);
    my @failed = grep { $_->{id} eq $w5 } @{ statuses($rcv) };
    is_deeply([ map { $_->{status} } @failed ], [ 'failed' ],
              'async_fail: one failed status, nothing else');
    my $meta_failed = meta('status_failed_131049.json')
                          ->{entry}[0]{changes}[0]{value}{statuses}[0];
    is_deeply(shape($failed[0]), shape($meta_failed),
              "failed: the shape of Meta's failed status");
    my %want = %{ $meta_failed->{errors}[0] };
    my %got = %{ $failed[0]{errors}[0] // {} };
    delete $want{href};
    like(delete $got{href} // '', qr/error-codes/, 'failed: href');
    is_deeply(\%got, \%want, "failed: Meta's code, title, message, details");

    # a read receipt posts nothing
    my $before = @{ received($rcv) };
    is($hook->send_message($PNID, { messaging_product => 'whatsapp',
        status => 'read', message_id => $w1 })->{status}, 200,
       'read receipt');
    sleep 0.3;
    is(scalar @{ received($rcv) }, $before, 'read receipt: no webhook');

    # batching: 60 messages, 180 statuses in far fewer POSTs, each in order
    my $path = "/v21.0/$PNID/messages";
    my $reqs = [ map { raw_request($path, encode_json(text_send(
                          to => sprintf('1555000%04d', $_))),
                          Connection => 'close') } 1 .. 60 ];
    my $before_st = @{ statuses($rcv) };
    my $answers = http_parallel($hook->port, $reqs);
    is(scalar(grep { $_->{status} == 200 } @$answers), 60,
       'batch: 60 sends accepted');
    $st = wait_statuses($rcv, $before_st + 180);
    my @new = @$st[ $before_st .. $#$st ];
    is(scalar @new, 180, 'batch: 180 statuses');
    my $nposts = @{ received($rcv) } - $before;
    ok($nposts < 60, "batch: in fewer POSTs than messages ($nposts)");
    %by = ();
    push @{ $by{ $_->{id} } }, $_->{status} for @new;
    is(scalar(grep { join(',', @{ $by{$_} }) eq 'sent,delivered,read' }
              keys %by), 60, 'batch: every message sent, delivered, read');

    my $s = $hook->stats;
    is($s->{webhooks_failed}, 0, 'stats: no failed webhook');
    is($s->{webhooks_sent}, scalar @{ received($rcv) },
       'stats: webhooks_sent counts the POSTs');
    is($s->{statuses_pending}, 0, 'stats: nothing pending');

    is($hook->stop, 0, 'webhook sim: exit 0 on SIGTERM');
    $hook->check_logs('webhook sim');
}


# ------------------------------------------- retries, delay, statuses

{
    my $flaky = receiver(500);
    my $sim2 = WaTest::GraphSim->new(webhook => $flaky->{url},
                                     app_secret => $SECRET,
                                     statuses => 'sent')->start;
    my $t0 = time;
    my $w = $sim2->send_message($PNID, text_send())->{json}{messages}[0]{id};
    wait_until(sub { @{ received($flaky) } >= 2 }, 10);
    my $posts = received($flaky);
    is(scalar @$posts, 2, 'answered 500 once: delivered again');
    is($posts->[1]{body}, $posts->[0]{body}, 'the same body again');
    is($posts->[1]{headers}{'x-hub-signature-256'},
       'sha256=' . hmac_sha256_hex($posts->[1]{body}, $SECRET),
       'signed again');
    is_deeply([ map { $_->{status} } @{ statuses($flaky) } ],
              [ 'sent', 'sent' ], '--statuses sent: only sent');
    wait_until(sub { $sim2->stats->{webhooks_sent} == 1 }, 5);
    my $s = $sim2->stats;
    is($s->{webhooks_failed}, 1, 'stats: one failed attempt');
    is($s->{webhooks_sent}, 1, 'stats: then one delivered');
    is($sim2->stop, 0, 'retry sim: exit 0');
    $sim2->check_logs('retry sim');

    my $slow = receiver();
    my $sim3 = WaTest::GraphSim->new(webhook => $slow->{url},
                                     app_secret => $SECRET,
                                     statuses => 'sent,read',
                                     status_delay_ms => 400)->start;
    $sim3->send_message($PNID, text_send());
    wait_until(sub { @{ received($slow) } >= 2 }, 10);
    my $st = statuses($slow);
    is_deeply([ map { $_->{status} } @$st ], [ 'sent', 'read' ],
              '--statuses sent,read');
    ok($st->[1]{timestamp} - $st->[0]{timestamp} <= 1,
       '--status-delay-ms 400: read within a second of sent');
    is(scalar @{ received($slow) }, 2, '--status-delay-ms: two POSTs');

    $sim3->add_rule({ times => 1, async_fail => { code => 131026,
                                                 details => 'nope' } });
    my $w6 = $sim3->send_message($PNID, text_send())->{json}{messages}[0]{id};
    wait_until(sub { grep { $_->{id} eq $w6 } @{ statuses($slow) } }, 10);
    my ($failed) = grep { $_->{id} eq $w6 } @{ statuses($slow) };
    is($failed->{errors}[0]{error_data}{details}, 'nope',
       'async_fail: details given');
    is($failed->{errors}[0]{title}, 'Message undeliverable',
       "async_fail: Meta's title");
    is($sim3->stop, 0, 'delay sim: exit 0');
    $sim3->check_logs('delay sim');

    my $quiet = receiver();
    my $sim4 = WaTest::GraphSim->new(webhook => $quiet->{url},
                                     app_secret => $SECRET,
                                     statuses => 'none')->start;
    $sim4->send_message($PNID, text_send());
    sleep 0.3;
    is(scalar @{ received($quiet) }, 0, '--statuses none: no webhook');
    is($sim4->stop, 0, 'quiet sim: exit 0');
}

is($sim->stop, 0, 'exit 0 on SIGTERM');
$sim->check_logs;

done_testing;
