# POST deliveries: X-Hub-Signature-256 over the raw body, byte-exact XADD.
use strict;
use warnings;
use Test::More;
use WaTest;

my $redis = WaTest::Redis->start;
my $nginx = WaTest::Nginx->start(
    http   => "whatsapp_redis " . $redis->addr . ";",
    server => webhook_location(secrets => [ 'old-secret', 'new-secret' ],
                               extra => 'client_max_body_size 3m;')
            . " location = /small { whatsapp_webhook;"
            . " whatsapp_app_secret_file $ENV{PWD}/t/fixtures/secret.txt;"
            . " whatsapp_verify_token tok; client_max_body_size 1k; }"
            . " location = /prefixed { whatsapp_webhook;"
            . " whatsapp_app_secret s; whatsapp_verify_token t;"
            . " whatsapp_redis_prefix '{tenant1}:'; }");

my $text = fixture('text.json');

sub post {
    my ($path, $headers, $body) = @_;
    return http_request($nginx->port, POST => $path, $headers, $body);
}

sub last_event {
    my ($key) = @_;
    my $r = $redis->cmd('XREVRANGE', $key // 'wa:events', '+', '-',
                        'COUNT', 1);
    return @$r ? { id => $r->[0][0], @{ $r->[0][1] } } : undef;
}

# refused deliveries never reach Redis
my $len = sub { $redis->cmd('XLEN', 'wa:events') };

run_cases($nginx->port, map { ($_, $_) } (
    { name => 'missing signature', method => 'POST', path => '/webhook',
      body => $text, status => 401 },
    { name => 'wrong signature', method => 'POST', path => '/webhook',
      body => $text, status => 401,
      headers => { 'X-Hub-Signature-256' => sign('other', $text) } },
    { name => 'signature of another body', method => 'POST',
      path => '/webhook', body => $text, status => 401,
      headers => { 'X-Hub-Signature-256' => sign('new-secret', "$text ") } },
    { name => 'sha1 header only', method => 'POST', path => '/webhook',
      body => $text, status => 401,
      headers => { 'X-Hub-Signature' => 'sha1=' . ('0' x 40) } },
    { name => 'no sha256= prefix', method => 'POST', path => '/webhook',
      body => $text, status => 401,
      headers => { 'X-Hub-Signature-256' =>
                   substr(sign('new-secret', $text), 7) } },
    { name => 'truncated hex', method => 'POST', path => '/webhook',
      body => $text, status => 401,
      headers => { 'X-Hub-Signature-256' =>
                   substr(sign('new-secret', $text), 0, -1) } },
    { name => 'non-hex digit', method => 'POST', path => '/webhook',
      body => $text, status => 401,
      headers => { 'X-Hub-Signature-256' => 'sha256=' . ('g' x 64) } },
    { name => 'method PUT', method => 'PUT', path => '/webhook',
      body => $text, status => 405, header => { Allow => 'GET, POST' } },
    { name => 'method DELETE', method => 'DELETE', path => '/webhook',
      status => 405 },
    { name => 'empty signed body', method => 'POST', path => '/webhook',
      body => '', status => 400,
      headers => { 'X-Hub-Signature-256' => sign('new-secret', '') } },
    { name => 'body over client_max_body_size', method => 'POST',
      path => '/small', body => 'x' x 2000, status => 413,
      headers => { 'X-Hub-Signature-256' => sign('file-secret', 'x' x 2000) } },
));
is($len->(), 0, 'no refused delivery was enqueued');

my $dup = "POST /webhook HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        . "X-Hub-Signature-256: " . sign('new-secret', $text) . "\r\n"
        . "X-Hub-Signature-256: " . sign('other', $text) . "\r\n"
        . "Content-Length: " . length($text) . "\r\n\r\n$text";
is(http_request($nginx->port, undef, undef, undef, undef, raw => $dup)
       ->{status}, 401, 'two signature headers are refused');
like($nginx->error_log, qr/signature does not match any app secret/,
     'a mismatch is logged');
unlike($nginx->error_log, qr/old-secret|new-secret/,
       'secrets never appear in the log');
is($len->(), 0, 'still nothing enqueued');

# byte-exact bodies, under either secret of a rotation
my %bodies = (
    'plain text message'         => $text,
    '\uXXXX escapes and \/'      => fixture('escaped.json'),
    'raw UTF-8'                  => fixture('utf8.json'),
    'batched statuses'           => fixture('batch.json'),
    'binary-ish bytes'           => "{\"x\":\"\x00\x01\xff\r\n\"}",
);
for my $name (sort keys %bodies) {
    for my $secret ('old-secret', 'new-secret') {
        my $body = $bodies{$name};
        my $res = post('/webhook',
                       { 'X-Hub-Signature-256' => sign($secret, $body) },
                       $body);
        is($res->{status}, 200, "$name signed with $secret: 200");
        my $ev = last_event();
        ok($ev && $ev->{body} eq $body, "$name ($secret): byte-exact in Redis");
        like($ev->{rcvd}, qr/^\d{13}$/, "$name: rcvd is ms since epoch");
        ok(abs($ev->{rcvd} / 1000 - time) < 60, "$name: rcvd is now");
        like($ev->{rid}, qr/^\d+\.\d+$/, "$name: rid is connection.request");
    }
}

# raw UTF-8 on the wire, signed (as Meta does) over the \u-escaped form
my $raw = fixture('utf8.json');
(my $escaped = $raw) =~ s{([\xc0-\xf7][\x80-\xbf]+)}{
    join '', map { $_ < 0x10000 ? sprintf('\\u%04x', $_)
                   : sprintf('\\u%04x\\u%04x', 0xd800 + (($_ - 0x10000) >> 10),
                             0xdc00 + (($_ - 0x10000) & 0x3ff)) }
             unpack 'U*', do { my $c = $1; utf8::decode($c); $c } }ge;
isnt($escaped, $raw, 'the escaped form differs from the raw body');
my $res = post('/webhook', { 'X-Hub-Signature-256' => sign('new-secret', $escaped) },
               $raw);
is($res->{status}, 200, 'raw UTF-8 body signed over its \u-escaped form: 200');
is(last_event()->{body}, $raw, '... enqueued as received, raw UTF-8');
is(post('/webhook', { 'X-Hub-Signature-256' => sign('other', $escaped) },
        $raw)->{status}, 401, '... and a wrong secret is still refused');

# upper-case hex is the same signature
my $upper = 'sha256=' . uc substr(sign('new-secret', $text), 7);
is(post('/webhook', { 'X-Hub-Signature-256' => $upper }, $text)->{status},
   200, 'upper-case hex digits are accepted');

# 2 MB: above client_body_buffer_size, so the body is in a temp file
my $big = '{"object":"whatsapp_business_account","entry":[' . join(',',
    map { qq({"id":"$_","changes":[{"field":"history","value":)
          . qq({"text":"\\u00e9\\/) . ('é' x 40) . qq("}}]}) } 1 .. 14000)
    . ']}';
ok(length($big) > 2_000_000, 'big body is over 2 MB (' . length($big) . ')');
$res = post('/webhook', { 'X-Hub-Signature-256' => sign('old-secret', $big) },
            $big);
is($res->{status}, 200, '2 MB body: 200');
my $ev = last_event();
ok($ev->{body} eq $big, '2 MB body from a temp file is byte-exact in Redis');
like($nginx->error_log, qr/client request body is buffered to a temporary file/,
     '2 MB body went through a temp file');

# a wrong signature on a big body is still refused
$res = post('/webhook', { 'X-Hub-Signature-256' => sign('bad', $big) }, $big);
is($res->{status}, 401, '2 MB body with a wrong signature: 401');

# secret from a file, trailing newline ignored
is(post('/small', { 'X-Hub-Signature-256' => sign('file-secret', $text) },
        $text)->{status}, 200, 'secret read from a file');

# key prefix with a hash tag
is(post('/prefixed', { 'X-Hub-Signature-256' => sign('s', $text) },
        $text)->{status}, 200, 'prefixed location: 200');
is(last_event('{tenant1}:events')->{body}, $text,
   'whatsapp_redis_prefix names the stream');

is($len->(), 2 * keys(%bodies) + 4, 'exactly the accepted deliveries are in '
   . 'the stream');

$nginx->stop;
$nginx->check_logs('signature');
done_testing;
