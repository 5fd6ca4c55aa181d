package WaTest::Jwt;

# JWTs made the way an identity provider makes them, independently of the
# module's verifier: HS256 with Digest::SHA, RS256 and ES256 with the
# openssl command line (keys generated at run time).
#
#   my $keys = WaTest::Jwt::keys($dir);      # {rsa_key, rsa_pub, ec_key, ...}
#   my $t = WaTest::Jwt::token(alg => 'HS256', key => $secret,
#                              claims => { sub => 'a1', exp => time + 60 });

use strict;
use warnings;

use Digest::SHA qw(hmac_sha256);
use File::Temp qw(tempfile);
use JSON::PP;
use MIME::Base64 qw(encode_base64url);


my $JSON = JSON::PP->new->canonical;


sub b64u { return encode_base64url($_[0]) }


# RSA 2048 and EC P-256 key pairs as PEM files in $dir.
sub keys {
    my ($dir) = @_;
    my %k = map { ($_ => "$dir/$_.pem") } qw(rsa_key rsa_pub ec_key ec_pub
                                              rsa2_key rsa2_pub);
    run("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 "
        . "-out $k{rsa_key}");
    run("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 "
        . "-out $k{rsa2_key}");
    run("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 "
        . "-out $k{ec_key}");
    for my $pair (qw(rsa rsa2 ec)) {
        my ($key, $pub) = @k{ "${pair}_key", "${pair}_pub" };
        run("openssl pkey -in $key -pubout -out $pub");
    }
    return \%k;
}


sub run {
    my ($cmd) = @_;
    my $out = `$cmd 2>&1`;
    die "$cmd: $out" if $?;
    return $out;
}


# An HS256 key for a test: hs256_key_file($dir) writes it where
# "whatsapp_auth jwt FILE" reads it and returns FILE; hs256_token(%claims)
# signs claims with it (sub ag1, valid for ten minutes, unless the claims
# say otherwise).
my $HS256_SECRET = 'an HS256 secret of at least 32 bytes, for tests';

sub hs256_key_file {
    my ($dir) = @_;
    open my $f, '>', "$dir/hs256.key" or die "$dir/hs256.key: $!";
    print {$f} "$HS256_SECRET\n";
    close $f;
    return "$dir/hs256.key";
}

sub hs256_token {
    my (%claims) = @_;
    return token(alg => 'HS256', key => $HS256_SECRET,
                 claims => { sub => 'ag1', exp => time + 600, %claims });
}


# token(alg => HS256|RS256|ES256|none, key => secret or private key file,
#       claims => {...}, header => {...} (merged over {alg, typ}))
sub token {
    my (%o) = @_;
    my $header = { alg => $o{alg}, typ => 'JWT', %{ $o{header} // {} } };
    my $input = b64u($JSON->encode($header)) . '.'
              . b64u(ref $o{claims} ? $JSON->encode($o{claims})
                                    : $o{claims});
    my $sig = $o{alg} eq 'none'  ? ''
            : $o{alg} eq 'HS256' ? hmac_sha256($input, $o{key})
            : $o{alg} eq 'RS256' ? openssl_sign($o{key}, $input)
            : $o{alg} eq 'ES256' ? der_to_raw(openssl_sign($o{key}, $input))
            : die "alg $o{alg}";
    return "$input." . b64u($sig);
}


sub openssl_sign {
    my ($key, $input) = @_;
    my ($fh, $in) = tempfile(UNLINK => 1);
    binmode $fh;
    print {$fh} $input;
    close $fh;
    open my $p, '-|', 'openssl', 'dgst', '-sha256', '-sign', $key, '-binary',
         $in or die "openssl: $!";
    binmode $p;
    local $/;
    my $sig = <$p>;
    close $p or die "openssl dgst failed";
    return $sig;
}


# ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER } -> r || s, 32 each
sub der_to_raw {
    my ($der) = @_;
    my @b = unpack 'C*', $der;
    die "not a DER sequence" unless $b[0] == 0x30;
    my $i = 2;
    $i++ if $b[1] & 0x80;                 # a long-form length (never here)
    my $raw = '';
    for (1 .. 2) {
        die "not a DER integer" unless $b[$i] == 0x02;
        my $len = $b[$i + 1];
        my $int = pack 'C*', @b[ $i + 2 .. $i + 1 + $len ];
        $int =~ s/^\x00+//;
        $raw .= ("\x00" x (32 - length $int)) . $int;
        $i += 2 + $len;
    }
    return $raw;
}

1;
