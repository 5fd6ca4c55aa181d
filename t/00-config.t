# Invalid configuration fails `nginx -t` with a message saying what to fix.
use strict;
use warnings;
use Test::More;
use WaTest;

my $redis = 'whatsapp_redis 127.0.0.1:6399;';

my @cases = (
    { name => 'complete webhook', ok => 1, http => $redis,
      server => webhook_location() },
    { name => 'secrets and token from files', ok => 1, http => $redis,
      server => "location /w { whatsapp_webhook;"
              . " whatsapp_app_secret_file $ENV{PWD}/t/fixtures/secret.txt;"
              . " whatsapp_verify_token_file $ENV{PWD}/t/fixtures/token.txt; }" },
    { name => 'inherited from http and server', ok => 1,
      http => "$redis whatsapp_app_secret a; whatsapp_app_secret b;",
      server => "whatsapp_verify_token t; whatsapp_redis_timeout 250ms;"
              . " location /w { whatsapp_webhook; }" },
    { name => 'redis by name, unix socket and options', ok => 1,
      http => 'whatsapp_redis localhost:6399 db=2 password=pw'
            . ' connect_timeout=2s max_pending=64;',
      server => 'server_name a; location /w { whatsapp_webhook;'
              . ' whatsapp_app_secret s; whatsapp_verify_token t; }'
              . ' location /status { whatsapp_status; }' },
    { name => 'unix socket', ok => 1,
      http => 'whatsapp_redis unix:/run/redis.sock;',
      server => webhook_location() },

    { name => 'webhook without app secret',
      http => $redis, server => 'location /w { whatsapp_webhook;'
                              . ' whatsapp_verify_token t; }',
      error => qr/"whatsapp_webhook" in \S+nginx.conf:\d+ needs whatsapp_app_secret or whatsapp_app_secret_file/ },
    { name => 'webhook without verify token',
      http => $redis, server => 'location /w { whatsapp_webhook;'
                              . ' whatsapp_app_secret s; }',
      error => qr/needs whatsapp_verify_token or whatsapp_verify_token_file/ },
    { name => 'webhook without redis',
      server => webhook_location(),
      error => qr/needs whatsapp_redis in the http or server block/ },
    { name => 'whatsapp_redis in a location',
      server => "location /w { $redis }",
      error => qr/"whatsapp_redis" directive is not allowed here/ },
    { name => 'whatsapp_redis twice',
      http => "$redis $redis", server => '',
      error => qr/"whatsapp_redis" directive is duplicate/ },
    { name => 'bad redis option',
      http => 'whatsapp_redis 127.0.0.1:6399 pasword=hunter2;',
      error => qr/invalid parameter of "whatsapp_redis"/,
      not_error => qr/hunter2/ },
    { name => 'bad db number',
      http => 'whatsapp_redis 127.0.0.1:6399 db=x;',
      error => qr/invalid parameter of "whatsapp_redis"/ },
    { name => 'zero max_pending',
      http => 'whatsapp_redis 127.0.0.1:6399 max_pending=0;',
      error => qr/invalid parameter of "whatsapp_redis"/ },
    { name => 'bad redis port',
      http => 'whatsapp_redis 127.0.0.1:99999;',
      error => qr/invalid port in Redis address "127.0.0.1:99999"/ },
    { name => 'bad timeout',
      http => "$redis whatsapp_redis_timeout fast;",
      error => qr/"whatsapp_redis_timeout" directive invalid value/ },
    { name => 'missing secret file',
      http => $redis, server => 'location /w { whatsapp_webhook;'
              . ' whatsapp_verify_token t;'
              . ' whatsapp_app_secret_file /nonexistent/secret; }',
      error => qr{open\(\) "/nonexistent/secret" failed} },
    { name => 'empty secret file',
      http => $redis, server => 'location /w { whatsapp_webhook;'
              . ' whatsapp_verify_token t;'
              . " whatsapp_app_secret_file $ENV{PWD}/t/fixtures/empty.txt; }",
      error => qr/secret file "\S+empty.txt" is empty/ },
    { name => 'empty inline secret',
      http => $redis, server => 'location /w { whatsapp_webhook;'
              . ' whatsapp_verify_token t; whatsapp_app_secret ""; }',
      error => qr/"whatsapp_app_secret" directive must not be empty/ },
    { name => 'verify token twice',
      http => $redis, server => 'location /w { whatsapp_webhook;'
              . ' whatsapp_app_secret s; whatsapp_verify_token a;'
              . ' whatsapp_verify_token b; }',
      error => qr/"whatsapp_verify_token" directive is duplicate/ },
    { name => 'webhook with an argument',
      http => $redis, server => 'location /w { whatsapp_webhook on; }',
      error => qr/invalid number of arguments in "whatsapp_webhook"/ },
);

WaTest::Nginx->check_cases(@cases);

done_testing;
