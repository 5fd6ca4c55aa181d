package WaTest::Send;

# The whole sending loop for t/3*.t: PostgreSQL, Redis, the Graph API
# simulator (posting its signed status webhooks back to NGINX), NGINX with
# the webhook and the API (scope from headers: X-Agent, X-Phones,
# X-Assigned), and whatsapp-worker with its sender pointed at the
# simulator.  Two business numbers, each with its own access token.
#
#   my $t = WaTest::Send->start(env => { WA_SENDER_RATE => 80 });
#   my $res = $t->send({ to => '+16505551234', type => 'text', ... });
#   $t->wait_status($res->{doc}{id}, 'read');

use strict;
use warnings;

use JSON::PP;
use Test::More;
use Time::HiRes qw(time sleep);

use WaTest;
use WaTest::GraphSim;


our $PN = '106540352242922';         # the fixtures' business number
our $PN2 = '106540352242923';
our $CUSTOMER = '16505551234';       # wrote to $PN (t/fixtures/text.json)
our $KEY = 'a1' x 32;                # the token key, 64 hex digits

my $json = JSON::PP->new->canonical->utf8;


sub start {
    my ($class, %o) = @_;
    my $self = bless { tokens => { $PN => 'tok-one', $PN2 => 'tok-two' } },
                     $class;

    $self->{pg} = WaTest::Postgres->start;
    $self->{redis} = WaTest::Redis->start;
    my $port = WaTest::free_port();

    $self->{sim} = WaTest::GraphSim->new(
        webhook => "http://127.0.0.1:$port/webhook", app_secret => 's3cret',
        %{ $o{sim} // {} });
    $self->{sim}->start;

    $self->{nginx} = WaTest::Nginx->start(
        port   => $port,
        http   => "whatsapp_redis " . $self->{redis}->addr . ";"
                . " whatsapp_postgres \"" . $self->{pg}->conninfo
                . "\" pool=2 queue=1000;",
        server => webhook_location()
                . " location /v1/ { whatsapp_api;"
                . "   whatsapp_auth scope \$http_x_agent \$http_x_phones"
                . "                       \$http_x_assigned; }");

    $self->{worker} = WaTest::Worker->new(
        redis => $self->{redis}, pg => $self->{pg},
        env => { WA_SENDER_GRAPH_URL => $self->{sim}->base_url,
                 WA_SENDER_GRAPH_VERSION => 'v25.0',
                 WA_SENDER_TOKEN_KEY => $KEY,
                 WA_SENDER_RETRY_BASE_MS => 100,
                 WA_SENDER_SWEEP_MS => 500,
                 WA_SENDER_TIMEOUT_MS => 3000,
                 %{ $o{env} // {} } });
    my ($ok, $out) = $self->{worker}->migrate;
    die "migrate: $out" unless $ok;

    $self->token($_, $self->{tokens}{$_}) for sort keys %{ $self->{tokens} };
    $self->{worker}->start;

    # the customer writes first, now: the 24-hour window is open
    my $inbound = WaTest::fixture('text.json');
    my $now = int time;
    $inbound =~ s/"timestamp":"\d+"/"timestamp":"$now"/;
    $self->webhook($inbound);
    WaTest::wait_until(sub { $self->{pg}->query(
        "SELECT count(*) FROM conversations WHERE last_customer_message_at "
        . "IS NOT NULL") =~ /^1$/ }, 20)
        or die "the inbound message was not stored:\n" . $self->{worker}->log;

    return $self;
}


# template($to, name => 'hello', more members...): a template send's body
sub template {
    my ($to, %o) = @_;
    my $name = delete $o{name} // 'hello';
    return { to => $to, type => 'template',
             template => { name => $name, language => { code => 'en' } },
             %o };
}


sub pg { $_[0]{pg} }
sub redis { $_[0]{redis} }
sub sim { $_[0]{sim} }
sub nginx { $_[0]{nginx} }
sub worker { $_[0]{worker} }


# whatsapp-worker token set ID, the token on standard input
sub token {
    my ($self, $pn, $token) = @_;
    my $w = $self->{worker};
    my $env = $w->env;
    local @ENV{ keys %$env } = values %$env;
    my $bin = WaTest::Worker::binary();
    open my $p, '|-', "$bin token set $pn >/dev/null" or die $!;
    print {$p} "$token\n";
    close $p;
    die "token set $pn failed" if $?;
    $self->{tokens}{$pn} = $token;
}


sub webhook {
    my ($self, $body) = @_;
    return WaTest::http_request($self->{nginx}->port, undef, undef, undef,
                                undef, raw => WaTest::signed_post(
                                    '/webhook', 's3cret', $body));
}


# The scope of a call: agent ag1, every number, unless headers say
sub headers {
    my ($self, $body, $headers) = @_;
    return { 'X-Agent' => 'ag1', 'X-Phones' => '*', 'X-Assigned' => 'false',
             (defined $body ? ('Content-Type' => 'application/json') : ()),
             %{ $headers // {} } };
}


# call(METHOD, path, body (ref: JSON-encoded), headers) -> response, with
# ->{doc} decoded
sub call {
    my ($self, $method, $path, $body, $headers) = @_;
    $body = $json->encode($body) if ref $body;
    my $res = WaTest::http_request($self->{nginx}->port, $method, $path,
                                   $self->headers($body, $headers), $body);
    $res->{doc} = eval { decode_json($res->{body}) };
    return $res;
}


# Many POST /v1/messages at once (from $PN unless a message says); the
# responses, in order
sub send_many {
    my ($self, @msgs) = @_;
    my @reqs = map {
        my $body = $json->encode({ phone_number_id => $PN, %$_ });
        WaTest::http_raw('POST', '/v1/messages', $self->headers($body), $body)
    } @msgs;
    return WaTest::http_parallel($self->{nginx}->port, \@reqs);
}


# POST /v1/messages from $PN unless the message says
sub send {
    my ($self, $msg, $headers) = @_;
    return $self->call('POST', '/v1/messages',
                       { phone_number_id => $PN, %$msg }, $headers);
}


sub row {
    my ($self, $id, @cols) = @_;
    my $cols = join ", ", map { "coalesce(${_}::text, '')" } @cols;
    my $out = $self->{pg}->query("SELECT $cols FROM messages "
                                 . "WHERE id = '$id'");
    chomp $out;
    return split /\|/, $out, -1;
}


sub wait_status {
    my ($self, $id, $status, $timeout) = @_;
    return WaTest::wait_until(sub {
        ($self->row($id, 'status'))[0] eq $status }, $timeout // 15);
}


# Requests the simulator received for a message of ours
sub received {
    my ($self, $id) = @_;
    return [ grep { ($_->{body}{biz_opaque_callback_data} // '') eq $id }
                  @{ $self->{sim}->requests } ];
}


# wa:updates entries as [event, data], in order
sub updates {
    my ($self) = @_;
    my $entries = $self->{redis}->cmd('XRANGE', 'wa:updates', '-', '+');
    return [ map { my %f = @{ $_->[1] }; [ $f{event}, decode_json($f{data}) ] }
                 @$entries ];
}


sub stop {
    my ($self) = @_;
    $self->{worker}->stop;
    $self->{worker}->check_logs;
    $self->{sim}->stop;
    $self->{nginx}->stop;
}

1;
