package WaTest::Process;

# Start a server in the foreground as a child, stop exactly that pid.

use strict;
use warnings;

use POSIX qw(WNOHANG);
use Time::HiRes qw(time sleep);


# spawn(argv => [...], env => {...}, stdout => path, user => name)
sub spawn {
    my (%o) = @_;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        setpgrp(0, 0);
        %ENV = (%ENV, %{ $o{env} // {} });
        if ($o{user}) {
            my (undef, undef, $uid, $gid) = getpwnam($o{user})
                or die "no user $o{user}";
            $( = $) = $gid;
            $< = $> = $uid;
        }
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', $o{stdout} // '/dev/null';
        open STDERR, '>&', \*STDOUT;
        exec @{ $o{argv} } or POSIX::_exit(127);
    }
    return $pid;
}


sub alive {
    my ($pid) = @_;
    return 0 unless $pid;
    return waitpid($pid, WNOHANG) == 0;
}


# Signal, wait up to $timeout, then SIGKILL.  Returns the exit status.
sub stop {
    my ($pid, $sig, $timeout) = @_;
    return unless $pid;
    kill $sig // 'TERM', $pid;
    my $deadline = time + ($timeout // 20);
    while (time < $deadline) {
        my $r = waitpid($pid, WNOHANG);
        return $? if $r == $pid || $r == -1;
        sleep 0.02;
    }
    kill 'KILL', $pid;
    waitpid($pid, 0);
    return -1;
}

1;
