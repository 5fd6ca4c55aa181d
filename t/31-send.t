# Sending end to end: POST /v1/messages -> wa_api_send (rules, queued row)
# -> wa:outbox doorbell -> the worker's sender -> the Graph API simulator
# (the exact JSON it received) -> wamid -> the simulator's signed status
# webhooks -> the message's final status, and every event on wa:updates.
use strict;
use warnings;
use JSON::PP;
use Test::More;
use WaTest;
use WaTest::Send;

my $PN = $WaTest::Send::PN;
my $CUSTOMER = $WaTest::Send::CUSTOMER;
my $TO = "+$CUSTOMER";

# statuses apart, so that each is a change of its own
# (the pair rate is t/32's: here many messages go to one customer at once)
my $t = WaTest::Send->start(sim => { status_delay_ms => 200 },
                            env => { WA_SENDER_PAIR_BURST => 45,
                                     WA_SENDER_PAIR_INTERVAL_MS => 10 });
my $pg = $t->pg;

# --- every message type, end to end ----------------------------------------

# a media card carousel's card: its image, a body, a quick reply and a URL
# (card_index a number, as Meta documents it)
sub card {
    my ($i) = @_;
    return { card_index => 0 + $i,
             components => [
                 { type => 'header', parameters => [
                     { type => 'image', image => { id => "155808153158482$i" } } ] },
                 { type => 'body', parameters => [
                     { type => 'text', text => "${i}0OFF" } ] },
                 { type => 'button', sub_type => 'quick_reply', index => '0',
                   parameters => [ { type => 'payload', payload => "more-$i" } ] },
                 { type => 'button', sub_type => 'url', index => 1,
                   parameters => [ { type => 'text', text => "item/$i" } ] } ] };
}

# a product card of a template carousel: the product, its View button
sub product_card {
    my ($i) = @_;
    return { card_index => 0 + $i,
             components => [
                 { type => 'header', parameters => [
                     { type => 'product',
                       product => { product_retailer_id => "sku-$i",
                                    catalog_id => '194836987003835' } } ] },
                 { type => 'button', sub_type => 'spm', index => 0,
                   parameters => [ { type => 'action', action => {} } ] } ] };
}

# an interactive carousel's media card (URL button) and product card
sub media_card {
    my ($i) = @_;
    return { card_index => 0 + $i, type => 'cta_url',
             header => { type => 'image',
                         image => { link => "https://example.com/$i.jpg" } },
             body => { text => "*Plant $i*\n\nEasy to care for" },
             action => { name => 'cta_url',
                         parameters => { display_text => 'Buy now',
                                         url => "https://example.com/p/$i" } } };
}
sub interactive_product_card {
    my ($i, $catalog) = @_;
    return { card_index => 0 + $i, type => 'product',
             action => { product_retailer_id => "sku-$i",
                         catalog_id => $catalog // '194836987003835' } };
}

my $wamid_in = 'wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=';
my %types = (
    text => { type => 'text',
              text => { body => "Yes, in blue \x{1f535} and \"red\"",
                        preview_url => JSON::PP::false } },
    reply => { type => 'text', text => { body => 'quoted' },
               context => { message_id => $wamid_in } },
    image => { type => 'image',
               image => { link => 'https://example.com/a.jpg',
                          caption => 'The best succulent ever?' } },
    video => { type => 'video', video => { id => '1166846181421424',
                                           caption => 'A succulent eclipse!' } },
    audio => { type => 'audio', audio => { id => '1013859600285441',
                                           voice => JSON::PP::true } },
    document => { type => 'document',
                  document => { id => '1376223850470843',
                                filename => 'order_abc123.pdf',
                                caption => 'Your order' } },
    sticker => { type => 'sticker', sticker => { id => '798882015472548' } },
    location => { type => 'location',
                  location => { latitude => '37.44216251868683',
                                longitude => '-122.16153582049394',
                                name => 'Philz Coffee',
                                address => '101 Forest Ave, Palo Alto' } },
    contacts => { type => 'contacts',
                  contacts => [ { name => { formatted_name => 'John Smith',
                                            first_name => 'John' },
                                  phones => [ { phone => '+1 650 555 1234',
                                                type => 'WORK' } ] } ] },
    reaction => { type => 'reaction',
                  reaction => { message_id => $wamid_in,
                                emoji => "\x{1f600}" } },
    unreact => { type => 'reaction',
                 reaction => { message_id => $wamid_in, emoji => '' } },
    template => { type => 'template',
                  template => {
                      name => 'order_update',
                      language => { policy => 'deterministic',
                                    code => 'en_US' },
                      components => [
                          { type => 'header', parameters => [
                              { type => 'image',
                                image => { link => 'https://example.com/h.png' } } ] },
                          { type => 'body', parameters => [
                              { type => 'text', text => 'Ann' },
                              { type => 'currency',
                                currency => { fallback_value => '$100.99',
                                              code => 'USD',
                                              amount_1000 => 100990 } },
                              { type => 'date_time',
                                date_time => { fallback_value => 'February 25, 1977' } } ] },
                          { type => 'button', sub_type => 'quick_reply',
                            index => '0', parameters => [
                              { type => 'payload', payload => 'YES' } ] } ] } },
    # a media card carousel, its cards in the order sent
    carousel => { type => 'template',
                  template => {
                      name => 'summer_succulents',
                      language => { code => 'en_US' },
                      components => [
                          { type => 'body', parameters => [
                              { type => 'text', text => 'Pablo' } ] },
                          { type => 'carousel',
                            cards => [ card(1), card(0) ] } ] } },
    offer => { type => 'template',
               template => {
                   name => 'limited_time_offer_caribbean_pkg_2023',
                   language => { code => 'en_US' },
                   components => [
                       { type => 'header', parameters => [
                           { type => 'image', image => { id => '1602186516975000' } } ] },
                       { type => 'body', parameters => [
                           { type => 'text', text => 'Pablo' },
                           { type => 'text', text => 'CARIBE25' } ] },
                       { type => 'limited_time_offer', parameters => [
                           { type => 'limited_time_offer',
                             limited_time_offer => { expiration_time_ms => 1708804800000 } } ] },
                       { type => 'button', sub_type => 'copy_code', index => 0,
                         parameters => [ { type => 'coupon_code',
                                           coupon_code => 'CARIBE25' } ] },
                       { type => 'button', sub_type => 'url', index => 1,
                         parameters => [ { type => 'text', text => 'n3mtql' } ] } ] } },
    buttons => { type => 'interactive',
                 interactive => {
                     type => 'button', body => { text => 'Change the date?' },
                     footer => { text => 'Reply below' },
                     action => { buttons => [
                         map { { type => 'reply',
                                 reply => { id => "b$_", title => "Option $_" } } }
                             1 .. 3 ] } } },
    list => { type => 'interactive',
              interactive => {
                  type => 'list', header => { type => 'text', text => 'Shipping' },
                  body => { text => 'Pick one' },
                  action => { button => 'Options', sections => [
                      { title => 'Fast', rows => [
                          { id => 'express', title => 'Express',
                            description => 'Next day' } ] },
                      { title => 'Slow', rows => [
                          { id => 'ground', title => 'Ground' } ] } ] } } },
    cta => { type => 'interactive',
             interactive => {
                 type => 'cta_url', body => { text => 'See the dates' },
                 action => { name => 'cta_url',
                             parameters => { display_text => 'See Dates',
                                             url => 'https://example.com/d' } } } },
    # commerce: a product, products in sections, the catalog, carousels
    product => { type => 'interactive',
                 interactive => {
                     type => 'product', body => { text => 'Back in stock' },
                     footer => { text => 'Lucky Shrub' },
                     action => { catalog_id => '194836987003835',
                                 product_retailer_id => 'nqryix03ez' } } },
    products => { type => 'interactive',
                  interactive => {
                      type => 'product_list',
                      header => { type => 'text', text => 'Our picks' },
                      body => { text => 'Rare succulents' },
                      action => { catalog_id => '194836987003835', sections => [
                          { title => 'Echeverias', product_items => [
                              map { { product_retailer_id => "e$_" } } 1 .. 20 ] },
                          { title => 'Aloes', product_items => [
                              map { { product_retailer_id => "a$_" } } 1 .. 10 ] } ] } } },
    catalog => { type => 'interactive',
                 interactive => {
                     type => 'catalog_message',
                     body => { text => 'Visit our catalog' },
                     footer => { text => 'Best deals on WhatsApp!' },
                     action => { name => 'catalog_message',
                                 parameters => {
                                     thumbnail_product_retailer_id => '2lc20305pt' } } } },
    media_carousel => { type => 'interactive',
                        interactive => {
                            type => 'carousel',
                            body => { text => 'Our latest arrivals:' },
                            action => { cards => [ map { media_card($_) } 0 .. 2 ] } } },
    product_carousel => { type => 'interactive',
                          interactive => {
                              type => 'carousel',
                              body => { text => 'Check out our featured products!' },
                              action => { cards => [
                                  map { interactive_product_card($_) } 1, 0 ] } } },
    product_cards => { type => 'template',
                       template => {
                           name => 'carousel_template_product_cards_v1',
                           language => { code => 'en_US' },
                           components => [
                               { type => 'body', parameters => [
                                   { type => 'text', text => 'Pablo' } ] },
                               { type => 'carousel',
                                 cards => [ map { product_card($_) } 0 .. 2 ] } ] } },
);

my %id;
for my $name (sort keys %types) {
    my $res = $t->send({ to => $TO, %{ $types{$name} } },
                       { 'X-Agent' => 'ag1' });
    is($res->{status}, 202, "$name: 202") or diag($res->{body});
    is($res->{doc}{status}, 'queued', "$name: queued");
    like($res->{doc}{id} // '', qr/^[0-9a-f-]{36}$/, "$name: an id");
    $id{$name} = $res->{doc}{id};
}

for my $name (sort keys %types) {
    my $id = $id{$name};
    # Meta reports only "sent" for a reaction
    my $final = $name =~ /react/ ? 'sent' : 'read';
    ok($t->wait_status($id, $final, 20), "$name: $final in the end")
        or diag(join '|', $t->row($id, 'status', 'error_title'));

    my $got = $t->received($id);
    is(scalar @$got, 1, "$name: Meta got it once");
    my %want = (%{ $types{$name} }, messaging_product => 'whatsapp',
                recipient_type => 'individual', to => $TO,
                biz_opaque_callback_data => $id);
    is_deeply($got->[0]{body}, \%want,
              "$name: Meta got Meta's body, our fields out, our id in")
        or diag(explain($got->[0]{body}));
    is($got->[0]{authorization}, 'Bearer tok-one',
       "$name: the number's own token");
    is($got->[0]{phone_number_id}, $PN, "$name: from the number's path");

    my ($wamid, $sent, $delivered, $read, $agent) =
        $t->row($id, 'wamid', 'sent_status_at', 'delivered_at', 'read_at',
                'sender_agent');
    is($wamid, $got->[0]{wamid}, "$name: Meta's wamid stored");
    ok($sent && ($final eq 'sent' || $delivered && $read),
       "$name: each transition's time kept");
    is($agent, 'ag1', "$name: the agent who sent it");
}

# Meta's integers stay JSON numbers on the way (fresh copies: comparing
# them as strings above may have made them strings)
my $canonical = JSON::PP->new->canonical;
like($canonical->encode($t->received($id{carousel})->[0]{body}{template}),
     qr/"cards":\[\{"card_index":1,.*\{"card_index":0,/,
     'carousel: each card_index a number');
like($canonical->encode($t->received($id{offer})->[0]{body}{template}),
     qr/\{"expiration_time_ms":1708804800000\}/,
     'offer: expiration_time_ms a number');
like($canonical->encode($t->received($id{product_carousel})->[0]{body}{interactive}),
     qr/"cards":\[\{"action":\{[^}]*\},"card_index":1,.*"card_index":0,/,
     'product carousel: cards in the order sent, each card_index a number');
like($canonical->encode($t->received($id{product_cards})->[0]{body}{template}),
     qr/"action":\{\},"type":"action"/,
     'product card template: the View button\'s empty action kept');

# events: message.new queued (no wamid yet), then accepted, sent,
# delivered, read, in that order, all with our id
# (Meta's own statuses name the wamid, which the accepted event tells)
my $text_id = $id{text};
my ($text_wamid) = $t->row($text_id, 'wamid');
my @evs = grep { ($_->[1]{message}{id} // '') eq $text_id
                 || ($_->[1]{message}{wamid} // '') eq $text_wamid }
              @{ $t->updates };
is($evs[0][0], 'message.new', 'first event: message.new');
is($evs[0][1]{message}{status}, 'queued', '... queued');
ok(!defined $evs[0][1]{message}{wamid}, '... without a wamid yet');
is($evs[0][1]{phone_number_id}, $PN, '... scoped by number');
ok(exists $evs[0][1]{assignee}, '... with the assignee (the relay filters)');
my %rank = (accepted => 1, sent => 2, delivered => 3, read => 4);
my @statuses = map { $_->[1]{message}{status} }
               grep { $_->[0] eq 'message.status' } @evs;
# (Meta's "sent" webhook may be applied before the sender records Meta's
# answer: the accepted message's event then already says "sent")
like($statuses[0], qr/^(accepted|sent)$/,
     'message.status: accepted (or sent) first');
is($statuses[-1], 'read', '... read last');
ok(!grep({ $rank{$statuses[$_]} <= $rank{$statuses[$_ - 1]} } 1 .. $#statuses),
   "... each a step forward (@statuses)");

my $conv = $pg->query("SELECT last_message_direction, last_message_preview, "
                      . "unread_count FROM conversations");
like($conv, qr/^out\|/, 'the conversation shows the last message sent');
unlike($pg->query("SELECT last_message_id FROM conversations"), qr/pending/,
       '... by its wamid once Meta accepted it');

# --- validation at the edge: nothing reaches PostgreSQL or Meta -------------

my $before = scalar @{ $t->sim->requests };
my @bad = (
    [ { to => $TO, type => 'text', text => { body => 'x' x 4097 } },
      qr/text\.body/ ],
    [ { to => '16505551234', type => 'text', text => { body => 'x' } },
      qr/^to / ],
    [ { to => $TO, type => 'interactive',
        interactive => { type => 'button', body => { text => 'b' },
                         action => { buttons => [ map { { type => 'reply',
                             reply => { id => "b$_", title => 't' } } } 1 .. 4 ] } } },
      qr/interactive\.action\.buttons/ ],
    [ { to => $TO, type => 'image', image => { link => 'http://insecure/a.jpg' } },
      qr/image\.link/ ],
    [ { to => $TO, type => 'text', text => { body => 'x' }, bogus => 1 },
      qr/bogus/ ],
    [ { to => $TO, type => 'text', text => { body => 'x' },
        biz_opaque_callback_data => 'mine' },
      qr/biz_opaque_callback_data/ ],
    [ { to => $TO, type => 'template',
        template => { name => 'summer_succulents', language => { code => 'en' },
                      components => [ { type => 'carousel',
                                        cards => [ card(3), card(3) ] } ] } },
      qr/^template\.components\[0\]\.cards\[1\]\.card_index is the same/ ],
    [ { to => $TO, type => 'interactive',
        interactive => { type => 'carousel', body => { text => 'b' },
                         action => { cards => [
                             interactive_product_card(0),
                             interactive_product_card(1, '42') ] } } },
      qr/^interactive\.action\.cards\[1\]\.action\.catalog_id must be the same/ ],
    [ { to => $TO, type => 'interactive',
        interactive => { type => 'product_list',
                         header => { type => 'text', text => 'h' },
                         body => { text => 'b' },
                         action => { catalog_id => '1', sections => [
                             { product_items => [
                                 map { { product_retailer_id => "p$_" } } 1 .. 31 ] } ] } } },
      qr/^interactive\.action\.sections\[0\]\.product_items makes more than 30 products/ ],
);
for my $case (@bad) {
    my $res = $t->send($case->[0]);
    is($res->{status}, 400, "400 for $case->[1]");
    is($res->{doc}{error}{code}, 'invalid_parameter', '... invalid_parameter');
    like($res->{doc}{error}{message}, $case->[1], '... naming the field');
}
# not a JSON object at all: malformed_json, as for every API body
for my $body ('{"to": ', '', '[1]') {
    my $res = $t->call('POST', '/v1/messages', $body);
    is_deeply([ $res->{status}, $res->{doc}{error}{code} ],
              [ 400, 'malformed_json' ], "'$body': 400 malformed_json")
        or diag(explain $res);
}
my $res;

# --- the rules that need the data ------------------------------------------

$res = $t->send({ to => '+4915112345678', type => 'text',
                  text => { body => 'hello?' } });
is($res->{status}, 422, 'free-form to someone who never wrote: 422');
is($res->{doc}{error}{code}, 'window_closed', '... window_closed');

$pg->query("UPDATE conversations SET last_customer_message_at = "
           . "now() - interval '25 hours'");
$res = $t->send({ to => $TO, type => 'text', text => { body => 'late' } });
is($res->{status}, 422, 'free-form 25 h after the customer wrote: 422');
like($res->{doc}{error}{message}, qr/more than 24 hours ago/, '... and why');
$res = $t->send({ to => $TO, %{ $types{template} } });
is($res->{status}, 202, 'a template is always allowed');
$pg->query("UPDATE conversations SET last_customer_message_at = now()");

$res = $t->send({ to => '+4915112345678', %{ $types{template} } });
is($res->{status}, 202, 'a template starts a conversation');
is($pg->query("SELECT count(*) FROM conversations "
              . "WHERE customer_id = '4915112345678'"), "1\n",
   '... which now exists');

$pg->query("UPDATE contacts SET opted_out = true "
           . "WHERE customer_id = '4915112345678'");
$res = $t->send({ to => '+4915112345678', %{ $types{template} } });
is($res->{status}, 422, 'opted-out contact: 422');
is($res->{doc}{error}{code}, 'opted_out', '... opted_out');

$pg->query("UPDATE contacts SET blocked = true WHERE customer_id = "
           . "'$CUSTOMER'");
$res = $t->send({ to => $TO, %{ $types{text} } });
is($res->{doc}{error}{code}, 'blocked', 'blocked contact: 422 blocked');
$pg->query("UPDATE contacts SET blocked = false");

$res = $t->send({ to => $TO, %{ $types{text} } }, { 'X-Phones' => 'other' });
is($res->{status}, 403, 'number outside the scope: 403');
$res = $t->send({ to => $TO, %{ $types{text} }, phone_number_id => '999' });
is($res->{status}, 404, 'unknown number: 404');
$res = $t->send({ to => $TO, %{ $types{text} } },
                { 'X-Agent' => 'ag2', 'X-Assigned' => 'true' });
is($res->{status}, 403, 'assigned-only agent, conversation not theirs: 403');

# idempotency: the same key, the same message, sent once
my %idem = (to => $TO, type => 'text', text => { body => 'once' },
            idempotency_key => 'order-42');
my $r1 = $t->send(\%idem, { 'X-Agent' => 'ag1' });
my $r2 = $t->send(\%idem, { 'X-Agent' => 'ag1' });
is($r1->{status}, 202, 'idempotent: first 202');
is($r2->{status}, 202, 'idempotent: again 202');
is($r2->{doc}{id}, $r1->{doc}{id}, '... with the same id');
my $r3 = $t->send({ %idem, text => { body => 'twice?' } }, { 'X-Agent' => 'ag1' });
is($r3->{status}, 409, 'the key with another request: 409');
is($r3->{doc}{error}{code}, 'idempotency_key_reused', '... named');
my $r4 = $t->send(\%idem, { 'X-Agent' => 'ag3' });
isnt($r4->{doc}{id}, $r1->{doc}{id}, "another caller's key is its own");
ok($t->wait_status($r1->{doc}{id}, 'read', 20), 'the idempotent one sent');
is(scalar @{ $t->received($r1->{doc}{id}) }, 1, '... once');

# --- read receipts -----------------------------------------------------------

$pg->query("UPDATE conversations SET unread_count = 3");
$res = $t->call('POST', "/v1/messages/$wamid_in/read", undef);
is($res->{status}, 202, 'read receipt: 202');
is($res->{doc}{receipt}, 'queued', '... queued');
is($pg->query("SELECT unread_count FROM conversations WHERE customer_id = "
              . "'$CUSTOMER'"), "0\n", '... unread reset at once');
ok(wait_until(sub { $pg->query("SELECT receipt FROM messages WHERE wamid = "
                               . "'$wamid_in'") eq "sent\n" }, 10),
   '... sent to Meta');
my ($receipt) = grep { ($_->{body}{status} // '') eq 'read' }
                     @{ $t->sim->requests };
is_deeply($receipt->{body}, { messaging_product => 'whatsapp',
                              status => 'read', message_id => $wamid_in },
          "... Meta's read body");
$res = $t->call('POST', "/v1/messages/wamid.nope/read", undef);
is($res->{status}, 404, 'read receipt of an unknown message: 404');
$res = $t->call('POST', "/v1/messages/$wamid_in/read", undef,
                { 'X-Phones' => 'other' });
is($res->{status}, 404, '... or outside the scope: 404');

# --- Meta refuses: no retry, the failure recorded and published -------------

my $REFUSED = '+4915000000047';
$t->sim->add_rule({ match => { to => $REFUSED }, times => 1,
                    error => { code => 131047 } });
$res = $t->send({ to => $REFUSED, %{ $types{template} } });
my $fid = $res->{doc}{id};
ok($t->wait_status($fid, 'failed', 15), 'permanent error: failed')
    or diag(explain([ $t->row($fid, 'status', 'error_title') ]));
my ($code, $title) = $t->row($fid, 'error_code', 'error_title');
is($code, 131047, "... Meta's code");
like($title, qr/Re-engagement/i, "... Meta's title");
is(scalar @{ $t->received($fid) }, 1, '... not retried');
is($pg->query("SELECT last_error_code FROM contacts WHERE customer_id = "
              . "'4915000000047'"), "131047\n", "... the contact's last error");
ok(grep({ $_->[0] eq 'message.status'
          && ($_->[1]{message}{id} // '') eq $fid
          && $_->[1]{message}{status} eq 'failed'
          && $_->[1]{message}{error_code} == 131047 } @{ $t->updates }),
   '... published as message.status failed');

# Meta accepts, then fails it asynchronously (its status webhook)
my $LATER = '+4915000000049';
$t->sim->add_rule({ match => { to => $LATER }, times => 1,
                    async_fail => { code => 131049 } });
$res = $t->send({ to => $LATER, %{ $types{template} } });
ok($t->wait_status($res->{doc}{id}, 'failed', 15),
   'a failed status webhook fails the sent message');
is(($t->row($res->{doc}{id}, 'error_code'))[0], 131049, '... with its code');

# --- customers known by a business-scoped user id (BSUID) -----------------

# an inbound text from a customer: their contact entry and message ids
sub inbound {
    my (%o) = @_;
    my $body = JSON::PP->new->canonical->encode(messages_delivery($PN,
        contacts => [ { profile => { name => 'Sam' }, %{ $o{contact} } } ],
        messages => [ { %{ $o{from} }, id => $o{wamid},
                        timestamp => '' . int(time), type => 'text',
                        text => { body => 'Another color?' } } ]));
    $t->webhook($body)->{status} == 200 or die 'webhook refused';
    wait_until(sub { $pg->query("SELECT count(*) FROM messages WHERE "
                                . "wamid = '$o{wamid}'") eq "1\n" }, 10)
        or die "$o{wamid} not stored";
    return $pg->query("SELECT conversation_id FROM messages "
                      . "WHERE wamid = '$o{wamid}'") =~ s/\n//r;
}

my $BSUID = 'US.13491208655302741918';
my $in_conv = inbound(contact => { user_id => $BSUID },
                   from => { from_user_id => $BSUID },
                   wamid => 'wamid.TESTBSUID000001');
$res = $t->send({ recipient => $BSUID, type => 'text',
                  text => { body => 'In red too.' } });
is($res->{status}, 202, 'a reply to a customer who shares no phone number '
   . '(recipient: their user id)') or diag($res->{body});
my $bid = $res->{doc}{id};
ok($t->wait_status($bid, 'read', 15), '... sent, read');
my ($breq) = @{ $t->received($bid) };
is($breq->{body}{recipient}, $BSUID, '... Meta got recipient');
ok(!exists $breq->{body}{to}, '... and no to');
is(($t->row($bid, 'conversation_id'))[0], $in_conv,
   '... in the conversation the customer wrote in');

my $BOTH = 'US.77000000000000000061';
$in_conv = inbound(contact => { wa_id => '4915000000061', user_id => $BOTH },
                from => { from => '4915000000061', from_user_id => $BOTH },
                wamid => 'wamid.TESTBSUID000002');
$res = $t->send({ recipient => $BOTH, type => 'text',
                  text => { body => 'Tuesday works.' } });
is($res->{status}, 202, 'a reply by user id to a customer with a phone too');
ok($t->wait_status($res->{doc}{id}, 'read', 15), '... sent, read');
is(($t->row($res->{doc}{id}, 'conversation_id'))[0], $in_conv,
   '... in their one conversation (keyed by the phone number)');
is($pg->query("SELECT count(*) FROM conversations WHERE customer_id IN "
              . "('4915000000061', '$BOTH')"), "1\n", '... no second one');

$res = $t->send({ to => '+4915000000061', recipient => $BOTH, type => 'text',
                  text => { body => 'x' } });
is($res->{status}, 400, 'to and recipient both: 400');
like($res->{body}, qr/recipient .*not both/, '... naming the field');

$t->stop;
done_testing;
