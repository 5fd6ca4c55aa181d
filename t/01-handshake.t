# Meta's verification handshake: GET with hub.mode, hub.verify_token and
# hub.challenge.
use strict;
use warnings;
use Test::More;
use WaTest;

my $redis = WaTest::Redis->start;
my $nginx = WaTest::Nginx->start(
    http   => "whatsapp_redis " . $redis->addr . ";",
    server => webhook_location(token => 'tok-3x4mpl3')
            . " location = /file { whatsapp_webhook; whatsapp_app_secret s;"
            . " whatsapp_verify_token_file " . $ENV{PWD} . "/t/fixtures/token.txt; }");

my $q = '/webhook?hub.mode=subscribe&hub.verify_token=tok-3x4mpl3';

# each case runs twice, so state left by one request shows in the next
run_cases($nginx->port, map { ($_, $_) } (
    { name => 'good handshake', path => "$q&hub.challenge=1158201444",
      status => 200, body_is => '1158201444',
      header => { 'Content-Type' => 'text/plain' } },
    { name => 'token percent-encoded', status => 200, body_is => 'abc',
      path => '/webhook?hub.mode=subscribe&hub.verify_token=tok%2D3x4mpl3'
            . '&hub.challenge=abc' },
    { name => 'token from a file', status => 200, body_is => '42',
      path => '/file?hub.mode=subscribe&hub.verify_token=from-file'
            . '&hub.challenge=42' },
    { name => 'wrong token', status => 403,
      path => '/webhook?hub.mode=subscribe&hub.verify_token=tok-3x4mpl'
            . '&hub.challenge=1' },
    { name => 'token with a suffix', status => 403,
      path => '/webhook?hub.mode=subscribe&hub.verify_token=tok-3x4mpl3x'
            . '&hub.challenge=1' },
    { name => 'empty token', status => 403,
      path => '/webhook?hub.mode=subscribe&hub.verify_token='
            . '&hub.challenge=1' },
    { name => 'wrong mode', status => 403,
      path => '/webhook?hub.mode=unsubscribe&hub.verify_token=tok-3x4mpl3'
            . '&hub.challenge=1' },
    { name => 'missing mode', status => 403,
      path => '/webhook?hub.verify_token=tok-3x4mpl3&hub.challenge=1' },
    { name => 'missing token', status => 403,
      path => '/webhook?hub.mode=subscribe&hub.challenge=1' },
    { name => 'missing challenge', status => 403, path => $q },
    { name => 'no query at all', status => 403, path => '/webhook' },
    { name => 'empty challenge', status => 403, path => "$q&hub.challenge=" },
    { name => 'script challenge is not reflected', status => 403,
      path => "$q&hub.challenge=%3Cscript%3Ealert(1)%3C/script%3E",
      body_is => "verification refused\n" },
    { name => 'challenge with CRLF is not reflected', status => 403,
      path => "$q&hub.challenge=1%0D%0ASet-Cookie:%20x=1" },
    { name => 'overlong challenge', status => 403,
      path => "$q&hub.challenge=" . ('9' x 257) },
    { name => 'longest plain challenge', status => 200,
      path => "$q&hub.challenge=" . ('9' x 256), body_is => '9' x 256 },
));

my $before = $redis->cmd('XLEN', 'wa:events');
is($before, 0, 'handshakes enqueue nothing');

$nginx->stop;
$nginx->check_logs('handshake');
done_testing;
