# Business rules kept in tables (sql/008_rules.sql): a conversation's
# type from the first template sent to it, and auto-replies to a
# customer's quick-reply, queued in the transaction that stores the
# answer and sent at once (the worker rings the sender's doorbell: the
# sender's sweep is a minute away here), once per answered message.
use strict;
use warnings;
use JSON::PP;
use Test::More;
use WaTest;
use WaTest::Send;

my $PN = $WaTest::Send::PN;
my $PN2 = $WaTest::Send::PN2;

my $t = WaTest::Send->start(env => { WA_SENDER_SWEEP_MS => 60000 });
my $pg = $t->pg;
my $json = JSON::PP->new->canonical;

sub template { WaTest::Send::template($_[0], name => @_[1 .. $#_]) }

sub conv {
    my ($pn, $customer, $col) = @_;
    my $out = $pg->query("SELECT coalesce(${col}::text, '') FROM conversations "
                         . "WHERE phone_number_id = '$pn' "
                         . "AND customer_id = '$customer'");
    chomp $out;
    return $out;
}

sub sent_to {
    my ($to, $name) = @_;
    return [ grep { $_->{body}{to} eq $to
                    && ($_->{body}{template}{name} // '') eq $name }
                  @{ $t->sim->requests } ];
}

# --- conversation type from the first template ----------------------------

$pg->query("INSERT INTO conversation_type_rules (position, template_name, "
           . "conversation_type) VALUES (10, '^owner|owners_template', "
           . "'owner'), (20, '', 'guest'), (5, 'special', 'vip')");
$pg->query("INSERT INTO conversation_type_rules (position, phone_number_id, "
           . "template_name, conversation_type) VALUES "
           . "(1, '$PN2', '', 'second-line')");

my $id = $t->send(template('+4940000101', 'owner_intro'))->{doc}{id};
ok($id, 'a template to a new customer');
is(conv($PN, '4940000101', 'type'), 'owner',
   '"owner..." sets the conversation type: owner');
my ($upd) = grep { $_->[0] eq 'conversation.update'
                   && $_->[1]{conversation}{customer_id} eq '4940000101' }
            @{ $t->updates };
is($upd && $upd->[1]{conversation}{type}, 'owner',
   '... and conversation.update carries it');
ok($upd && exists $upd->[1]{conversation}{profile_name}
   && exists $upd->[1]{conversation}{window_closes_at},
   '... in the API\'s shape (profile_name, window_closes_at: sql/016)');

$t->send(template('+4940000101', 'special_offer'));
is(conv($PN, '4940000101', 'type'), 'owner',
   'a later template does not change it');

$t->send(template('+4940000102', 'monthly_owners_template_v2'));
is(conv($PN, '4940000102', 'type'), 'owner', '"...owners_template...": owner');
$t->send(template('+4940000103', 'hello'));
is(conv($PN, '4940000103', 'type'), 'guest', 'anything else: guest');
$t->send(template('+4940000104', 'special_hello'));
is(conv($PN, '4940000104', 'type'), 'vip', 'the rules go in position order');
$t->send(template('+4940000105', 'owner_intro', phone_number_id => $PN2));
is(conv($PN2, '4940000105', 'type'), 'second-line',
   "a number's own rule");

# an agent's choice stands; cleared, the next template decides again
my $cid = conv($PN, '4940000103', 'id');
my $res = $t->call('PATCH', "/v1/conversations/$cid", { type => 'partner' });
is($res->{status}, 200, 'an agent sets the type');
$t->send(template('+4940000103', 'owner_intro'));
is(conv($PN, '4940000103', 'type'), 'partner', '... a template leaves it');
$t->call('PATCH', "/v1/conversations/$cid", { type => undef });
$t->send(template('+4940000103', 'owner_intro'));
is(conv($PN, '4940000103', 'type'), 'owner',
   '... cleared, the next template sets it');

$t->send({ to => '+4940000103', type => 'text', text => { body => 'hi' } });
my $free = $t->send({ to => "+$WaTest::Send::CUSTOMER", type => 'text',
                      text => { body => 'hi' } });
is($free->{status}, 202, 'a free-form message ...');
is(conv($PN, $WaTest::Send::CUSTOMER, 'type'), '', '... sets no type');

$pg->psql('wa', "INSERT INTO conversation_type_rules (position, "
          . "template_name, conversation_type) VALUES (30, '(', 'x')");
isnt($?, 0, 'a rule that is not a regular expression is refused');
$pg->psql('wa', "INSERT INTO conversation_type_rules (position, "
          . "template_name, conversation_type) VALUES (31, 'a', 'none')");
isnt($?, 0, '... and the type "none" (it means no type in filters)');

# --- auto-replies -----------------------------------------------------------

$pg->query("INSERT INTO auto_reply_rules (in_reply_to_template, answer, "
           . "send_template, send_language, send_components) VALUES "
           . "('visit_offer', 'Yes', 'visit_booking', 'en_US', "
           . "'[{\"type\":\"body\",\"parameters\":[{\"type\":\"text\","
           . "\"text\":\"Tuesday\"}]}]')");
$pg->query("INSERT INTO auto_reply_rules (answer, send_template, "
           . "send_language) VALUES ('book-now', 'booking_link', 'en')");
$pg->query("INSERT INTO auto_reply_rules (phone_number_id, answer, "
           . "send_template, send_language) VALUES "
           . "('$PN', 'book-now', 'booking_link_de', 'de')");

my $seq = 0;

# a customer's answer: a template's quick-reply button, or (interactive)
# a reply button, to the message context names
sub answer {
    my ($from, $context, %o) = @_;
    my $wamid = sprintf 'wamid.TEST%s%06d', $from, ++$seq;
    my $msg = { from => $from, id => $wamid, timestamp => '' . int(time),
                context => { from => '15550783881', id => $context } };
    if ($o{interactive}) {
        $msg->{type} = 'interactive';
        $msg->{interactive} = { type => 'button_reply',
                                button_reply => $o{interactive} };
    } else {
        $msg->{type} = 'button';
        $msg->{button} = $o{button};
    }
    my $body = $json->encode(messages_delivery($o{pn} // $PN,
        contacts => [ { profile => { name => 'Ana' }, wa_id => $from } ],
        messages => [ $msg ]));
    my $r = $t->webhook($body);
    die "webhook: $r->{status}" unless $r->{status} == 200;
    return ($wamid, $body);
}

sub offer {
    my ($to, $name) = @_;
    my $mid = $t->send(template("+$to", $name))->{doc}{id};
    $t->wait_status($mid, 'read', 15) or die "offer $name to $to not read";
    return ($t->row($mid, 'wamid'))[0];
}

sub replies_in {
    my ($customer) = @_;
    my $out = $pg->query("SELECT id FROM messages WHERE source = 'auto' "
                         . "AND customer_id = '$customer' ORDER BY sent_at");
    return split /\n/, $out;
}

my $offer = offer('4940000201', 'visit_offer');
my ($yes, $yes_body) = answer('4940000201', $offer,
                              button => { text => 'YES', payload => 'p-yes' });
ok(wait_until(sub { @{ sent_to('+4940000201', 'visit_booking') } == 1 }, 5),
   'quick-reply "YES" to visit_offer: visit_booking sent at once '
   . '(the doorbell, not the sweep)');
my $got = sent_to('+4940000201', 'visit_booking')->[0]{body};
is_deeply($got->{template},
          { name => 'visit_booking', language => { code => 'en_US' },
            components => [ { type => 'body', parameters => [
                { type => 'text', text => 'Tuesday' } ] } ] },
          '... with the rule\'s language and components');
my ($reply) = replies_in('4940000201');
ok($t->wait_status($reply, 'read', 15), '... and it goes all the way: read');
is(($t->row($reply, 'source', 'bulk', 'sender_agent'))[0], 'auto',
   '... stored as source auto');

my @ev = grep { ($_->[1]{conversation_id} // $_->[1]{conversation}{id} // '')
                eq conv($PN, '4940000201', 'id') } @{ $t->updates };
my @new = grep { $_->[0] eq 'message.new' } @ev;
ok(@new >= 3, 'message.new for the offer, the answer, the reply');
my ($ans_i) = grep { ($new[$_][1]{message}{wamid} // '') eq $yes } 0 .. $#new;
my $rep_ev = defined $ans_i ? $new[$ans_i + 1] : undef;
is($rep_ev && $rep_ev->[1]{message}{id}, $reply,
   '... the reply right after the answer');
ok($rep_ev && !defined $rep_ev->[1]{message}{wamid}
   && $rep_ev->[1]{message}{source} eq 'auto',
   '... queued, no wamid yet, source auto');

# Meta delivers the answer again; the customer taps again
$t->webhook($yes_body);
answer('4940000201', $offer, button => { text => 'Yes', payload => 'p-yes' });
sleep 2;
is(scalar @{ sent_to('+4940000201', 'visit_booking') }, 1,
   'a repeated delivery and a second tap: still one reply');
is(scalar(() = replies_in('4940000201')), 1, '... one auto message stored');

# not the rule's: another answer, an answer to another template
my $other = offer('4940000202', 'hello');
answer('4940000202', $other, button => { text => 'Yes', payload => 'p-yes' });
my $offer3 = offer('4940000203', 'visit_offer');
answer('4940000203', $offer3, button => { text => 'No', payload => 'p-no' });

# opted out, or a blocked conversation: never answered
my $offer4 = offer('4940000204', 'visit_offer');
$pg->query("UPDATE contacts SET opted_out = true "
           . "WHERE customer_id = '4940000204'");
answer('4940000204', $offer4, button => { text => 'Yes', payload => 'p' });
my $offer5 = offer('4940000205', 'visit_offer');
$t->call('PATCH', '/v1/conversations/' . conv($PN, '4940000205', 'id'),
         { status => 'blocked' });
answer('4940000205', $offer5, button => { text => 'Yes', payload => 'p' });

# an interactive reply button, by its id, on either number: the number's
# own rule first
my $any = offer('4940000206', 'hello');
answer('4940000206', $any,
       interactive => { id => 'book-now', title => 'Book now' });
# the answer's context is a message of PN2's, which $PN2 sent
my $m2 = $t->send(template('+4940000207', 'hello', phone_number_id => $PN2));
$t->wait_status($m2->{doc}{id}, 'read', 15);
answer('4940000207', ($t->row($m2->{doc}{id}, 'wamid'))[0], pn => $PN2,
       interactive => { id => 'book-now', title => 'Book now' });
ok(wait_until(sub { @{ sent_to('+4940000206', 'booking_link_de') } == 1
                    && @{ sent_to('+4940000207', 'booking_link') } == 1 }, 5),
   "a reply button's id: the number's own rule, else the rule for all");
is(scalar @{ sent_to('+4940000206', 'booking_link') }, 0,
   '... one reply, not one per rule');

# a disabled rule does nothing
$pg->query("UPDATE auto_reply_rules SET enabled = false "
           . "WHERE send_template = 'visit_booking'");
my $offer8 = offer('4940000208', 'visit_offer');
answer('4940000208', $offer8, button => { text => 'Yes', payload => 'p' });

sleep 2;
is(scalar(() = replies_in($_)), 0, "no auto-reply to $_")
    for qw(4940000202 4940000203 4940000204 4940000205 4940000208);
is(scalar(grep { $_->{body}{to} =~ /^\+49400002(?:0[2-58])$/
                 && $_->{body}{template}{name} =~ /booking/ }
           @{ $t->sim->requests }), 0,
   '... and nothing of the kind reached Meta');

$pg->psql('wa', "INSERT INTO auto_reply_rules (answer, send_template, "
          . "send_language) VALUES ('x', 'Bad Name', 'en')");
isnt($?, 0, 'a rule whose template name Meta would refuse is refused');

$t->stop;
done_testing;
