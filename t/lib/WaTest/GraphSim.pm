package WaTest::GraphSim;

# wa-graph-sim (a local WhatsApp Cloud API) on a free loopback port, in its
# own temp dir, stopped by pid; and a client for its /_sim/ endpoints.
#
#   my $sim = WaTest::GraphSim->new(webhook => $url, app_secret => 's3cret',
#                                   statuses => 'sent,delivered,read',
#                                   status_delay_ms => 0)->start;
#   $sim->add_rule({ match => { to => '15550001111' }, times => 1,
#                    error => { code => 131047 } });
#   my $res = $sim->send_message('1234', { to => '155...', ... });
#
# The binary is $ENV{WA_GRAPH_SIM} (default build/wa-graph-sim).

use strict;
use warnings;

use File::Temp qw(tempdir);
use HTTP::Tiny;
use JSON::PP;
use Test::More;

use WaTest ();
use WaTest::Process;


sub binary {
    return WaTest::built('WA_GRAPH_SIM', 'build/wa-graph-sim');
}


# new(webhook => URL, app_secret => '...', statuses => 'sent,read' | 'none',
#     status_delay_ms => N, args => [ more command-line arguments ])
sub new {
    my ($class, %o) = @_;
    my $self = bless { %o,
                       port => $o{port} // WaTest::free_port(),
                       dir => tempdir('wa-graph-sim-XXXXXX', TMPDIR => 1,
                                      CLEANUP => 1) }, $class;
    $self->{http} = HTTP::Tiny->new(timeout => 30, keep_alive => 1);
    return $self;
}


sub argv {
    my ($self) = @_;
    my @argv = (binary(), '--listen', "127.0.0.1:$self->{port}",
                '--pid-file', "$self->{dir}/sim.pid");
    if (defined $self->{webhook}) {
        my $secret = "$self->{dir}/app_secret";
        open my $f, '>', $secret or die "$secret: $!";
        print {$f} ($self->{app_secret} // 's3cret'), "\n";
        close $f;
        push @argv, '--webhook', $self->{webhook},
                    '--app-secret-file', $secret;
    }
    push @argv, '--statuses', $self->{statuses} if defined $self->{statuses};
    push @argv, '--status-delay-ms', $self->{status_delay_ms}
        if defined $self->{status_delay_ms};
    return @argv, @{ $self->{args} // [] };
}


sub start {
    my ($self) = @_;
    $self->{pid} = WaTest::Process::spawn(
        argv => [ $self->argv ],
        env => {
            ASAN_OPTIONS => "log_path=$self->{dir}/sanitizer:detect_leaks=1",
            UBSAN_OPTIONS =>
                "log_path=$self->{dir}/sanitizer:print_stacktrace=1",
        },
        stdout => "$self->{dir}/sim.log");
    WaTest::wait_until(sub {
        die "wa-graph-sim exited:\n" . $self->log
            unless WaTest::Process::alive($self->{pid});
        $self->log =~ /listening on/ && eval { $self->stats };
    }, 10) or die "wa-graph-sim did not start:\n" . $self->log;
    return $self;
}


# stop('TERM') -> exit status
sub stop {
    my ($self, $sig) = @_;
    return unless $self->{pid};
    return WaTest::Process::stop(delete $self->{pid}, $sig // 'TERM', 30);
}


sub pid { $_[0]{pid} }

sub port { $_[0]{port} }

sub dir { $_[0]{dir} }

sub base_url { "http://127.0.0.1:$_[0]{port}" }

sub log { WaTest::slurp("$_[0]{dir}/sim.log") // '' }


# The messages URL of a phone number id, as the worker builds it.
sub messages_url {
    my ($self, $phone_number_id, $version) = @_;
    return $self->base_url . '/' . ($version // 'v21.0')
         . "/$phone_number_id/messages";
}


# POST a send (a hash, encoded here, or raw bytes) with "Bearer tok"
# (token => 'other', or token => undef for none; version => 'v24.0';
# headers => {...}); the HTTP::Tiny response, ->{json} decoded when JSON.
sub send_message {
    my ($self, $phone_number_id, $body, %o) = @_;
    my $token = exists $o{token} ? $o{token} : 'tok';
    my $headers = { 'Content-Type' => 'application/json',
                    defined $token ? (Authorization => "Bearer $token") : (),
                    %{ $o{headers} // {} } };
    my $res = $self->{http}->request('POST',
        $self->messages_url($phone_number_id, $o{version}),
        { headers => $headers,
          content => ref $body ? encode_json($body) : $body });
    $res->{json} = eval { decode_json($res->{content}) }
        if ($res->{headers}{'content-type'} // '') =~ m{application/json};
    return $res;
}


sub _call {
    my ($self, $method, $path, $data) = @_;
    my $res = $self->{http}->request($method, $self->base_url . $path,
        defined $data
            ? { headers => { 'Content-Type' => 'application/json' },
                content => encode_json($data) }
            : {});
    die "$method $path: $res->{status} $res->{content}\n"
        unless $res->{success};
    return decode_json($res->{content});
}


# add_rule({ match => {...}, times => N, error | delay_ms | drop |
#            http_status | async_fail => ... })
sub add_rule { $_[0]->_call('POST', '/_sim/rules', $_[1]) }

sub clear_rules { $_[0]->_call('DELETE', '/_sim/rules') }

# [{t_ms, phone_number_id, version, authorization, body, http_status, wamid}]
sub requests { $_[0]->_call('GET', '/_sim/requests') }

sub clear_requests { $_[0]->_call('DELETE', '/_sim/requests') }

# {requests, accepted, errors, webhooks_sent, webhooks_failed, ...}
sub stats { $_[0]->_call('GET', '/_sim/stats') }


sub check_logs {
    my ($self, $name) = @_;
    WaTest::check_sanitizer($self->{dir}, 'sanitizer*', $name // 'wa-graph-sim');
}


sub DESTROY { $_[0]->stop('KILL') if $_[0]{pid} }

1;
