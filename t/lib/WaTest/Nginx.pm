package WaTest::Nginx;

# NGINX with the module under test: master + workers in the foreground,
# in a temp prefix, on a free loopback port.

use strict;
use warnings;

use File::Path qw(make_path);
use File::Spec;
use IO::Socket::INET;
use File::Temp qw(tempdir);
use Test::More;
use Time::HiRes qw(sleep);

use WaTest::Process;


my $NGINX = $ENV{WA_NGINX} // '/usr/sbin/nginx';


sub module_path {
    return WaTest::built('WA_MODULE', 'build/ngx_http_whatsapp_module.so');
}


sub asan_env {
    my ($dir) = @_;
    return {} unless $ENV{WA_ASAN};
    chomp(my $lib = `gcc -print-file-name=libasan.so`);
    return {
        LD_PRELOAD => $lib,
        ASAN_OPTIONS => "log_path=$dir/sanitizer/report:detect_leaks=1:"
                      . "abort_on_error=0:detect_odr_violation=0:fast_unwind_on_malloc=0:malloc_context_size=12",
        UBSAN_OPTIONS => "log_path=$dir/sanitizer/report:print_stacktrace=1",
    };
}


# new(http => '...', server => '...', workers => 2, main => '...')
sub new {
    my ($class, %o) = @_;
    my $dir = tempdir('wa-nginx-XXXXXX', TMPDIR => 1, CLEANUP => 1);

    # workers run as nobody and write temp files and sanitizer logs here
    chmod 0755, $dir;
    make_path("$dir/conf", "$dir/logs");
    make_path("$dir/sanitizer", { mode => 0777 });
    chmod 0777, "$dir/sanitizer";

    my $self = bless { dir => $dir, port => $o{port} // WaTest::free_port(),
                       workers => $o{workers} // 2, %o }, $class;
    $self->write_conf;
    return $self;
}


sub start {
    my ($class, %o) = @_;
    my $self = $class->new(%o);
    $self->run;
    return $self;
}


sub conf_text {
    my ($self) = @_;
    my ($d, $p) = @$self{qw(dir port)};
    my $module = module_path();
    my $access = $self->{http} =~ /access_log/ ? '' : 'access_log off;';
    return <<"CONF";
load_module $module;
daemon off;
master_process on;
worker_processes $self->{workers};
worker_rlimit_nofile 8192;
error_log $d/logs/error.log info;
pid $d/logs/nginx.pid;
$self->{main}

events { worker_connections 4096; }

http {
    $access
    client_body_temp_path $d/body;
    proxy_temp_path $d/proxy;
    fastcgi_temp_path $d/fastcgi;
    uwsgi_temp_path $d/uwsgi;
    scgi_temp_path $d/scgi;

    $self->{http}

    server {
        listen 127.0.0.1:$p backlog=4096;
        $self->{server}
    }
}
CONF
}


sub write_conf {
    my ($self) = @_;
    $self->{$_} //= '' for qw(main http server);
    open my $f, '>', "$self->{dir}/conf/nginx.conf" or die $!;
    print {$f} $self->conf_text;
    close $f;
}


sub argv {
    my ($self, @extra) = @_;
    return ($NGINX, '-p', "$self->{dir}/", '-c', "$self->{dir}/conf/nginx.conf",
            '-e', "$self->{dir}/logs/error.log", @extra);
}


# nginx -t: returns (ok, output)
sub check {
    my ($self) = @_;
    my @argv = $self->argv('-t');
    my $env = asan_env($self->{dir});
    local @ENV{ keys %$env } = values %$env;
    # nginx -t exits without freeing the configuration it built
    $ENV{ASAN_OPTIONS} =~ s/detect_leaks=1/detect_leaks=0/ if $env->{ASAN_OPTIONS};
    my $out = `@argv 2>&1`;
    return ($? == 0, $out);
}


# nginx -t over a list of cases {name, http, server, ok | error,
# not_error}: passes, or fails saying why (error) and echoing no secret
# (not_error).
sub check_cases {
    my ($class, @cases) = @_;
    for my $c (@cases) {
        my $n = $class->new(http => $c->{http}, server => $c->{server});
        my ($ok, $out) = $n->check;
        if ($c->{ok}) {
            ok($ok, "$c->{name}: nginx -t passes") or diag($out);
            next;
        }
        ok(!$ok, "$c->{name}: nginx -t fails");
        like($out, $c->{error}, "$c->{name}: says why") or diag($out);
        unlike($out, $c->{not_error}, "$c->{name}: no secret echoed")
            if $c->{not_error};
    }
}


sub run {
    my ($self) = @_;
    $self->{pid} = WaTest::Process::spawn(
        argv => [ $self->argv ], env => asan_env($self->{dir}),
        stdout => "$self->{dir}/logs/stderr.log");
    my $ok = WaTest::wait_until(sub {
        IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                              PeerPort => $self->{port})
    }, 10);
    die "nginx did not start:\n" . $self->log_tail unless $ok;
    if ($ENV{WA_ASAN}) {
        open my $maps, '<', "/proc/$self->{pid}/maps" or die $!;
        die "libasan is not loaded into nginx"
            unless grep { /libasan/ } <$maps>;
    }
    $self->wait_redis_ready
        if !$self->{no_wait} && "$self->{http} $self->{server}" =~ /whatsapp_redis/;
}


# Every worker logs "Redis ... ready" once its connection is usable.
sub wait_redis_ready {
    my ($self, $n) = @_;
    $n //= $self->{workers};
    my $ok = WaTest::wait_until(sub { $self->count_log(qr/Redis \S+ ready/)
                                      >= $n }, 10);
    die "workers did not connect to Redis:\n" . $self->log_tail unless $ok;
}


sub port { $_[0]{port} }

sub dir { $_[0]{dir} }

sub pid { $_[0]{pid} }


# A whatsapp_status value (a line "name value") from $path ('/status'),
# or undef.
sub metric {
    my ($self, $name, $path) = @_;
    my $s = WaTest::http_request($self->{port}, GET => $path // '/status')
                ->{body} // '';
    return $s =~ /^\Q$name\E (\d+)$/m ? $1 : undef;
}


sub error_log {
    my ($self) = @_;
    return WaTest::slurp("$self->{dir}/logs/error.log") // '';
}


sub count_log {
    my ($self, $re) = @_;
    return scalar(() = $self->error_log =~ /$re/g);
}


sub log_tail {
    my ($self) = @_;
    my @l = split /\n/, $self->error_log;
    return join "\n", @l[ ($#l > 30 ? $#l - 30 : 0) .. $#l ];
}


sub reload { kill 'HUP', $_[0]{pid} }


# Graceful quit; returns after the master exits.
sub quit {
    my ($self) = @_;
    WaTest::Process::stop(delete $self->{pid}, 'QUIT', 30);
}


# Problems found in error.log and sanitizer reports, as test failures.
sub check_logs {
    my ($self, $name) = @_;
    my @bad = grep { /\[(alert|crit|emerg)\]/ } split /\n/, $self->error_log;
    for my $f (glob "$self->{dir}/sanitizer/* $self->{dir}/logs/stderr.log") {
        my $text = WaTest::slurp($f) // '';
        push @bad, "$f:\n$text" if $text =~ /ERROR: AddressSanitizer|runtime error:/;
        push @bad, "$f:\n$_" for our_leaks($text);
    }
    ok(!@bad, ($name // 'nginx') . ': no alert/crit/emerg or sanitizer '
              . 'report') or diag(join "\n", @bad);
}


# NGINX itself leaves a few arrays unfreed at exit (connections, events),
# reachable only from each other ("indirect").  Everything else counts: a
# direct leak, or a stack through the module, which shows as "<unknown
# module>" since NGINX unloads it (and hiredis with it) before exiting.
sub our_leaks {
    my ($text) = @_;
    return () unless $text =~ /ERROR: LeakSanitizer/;
    return grep { /^Direct leak|<unknown module>|ngx_http_whatsapp|\bwa_|hiredis/ }
           split /\n(?=(?:Direct|Indirect) leak)/, $text;
}


sub stop {
    my ($self) = @_;
    return unless $self->{pid};
    $self->quit;
}


sub DESTROY { $_[0]->stop }

1;
