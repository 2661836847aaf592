#!/usr/bin/perl
# An SCGI echo server for the client interop tests, on libscgi-perl's SCGI
# module (Debian's libscgi-perl 0.6). One request at a time.
#
#   perl echo_scgi.pl --port 4001      (TCP on 127.0.0.1)
#   perl echo_scgi.pl --socket /tmp/x.sock
#
# It answers what it received, so a test can check what the client sent:
#   /raw          the request body, as it came
#   /status/NNN   status NNN with a short text body
#   /cookies      three Set-Cookie headers
#   anything else a JSON report: method, path, query, every variable the
#                 module parsed (values read as UTF-8), body length, SHA-256
# The body is sent for HEAD too, as a naive CGI app would.
use strict;
use warnings;
use IO::Socket::INET;
use IO::Socket::UNIX;
use Digest::SHA qw(sha256_hex);
use JSON::PP;
use Encode qw(decode);
use SCGI;

my ($mode, $where) = @ARGV;
die "usage: $0 --port N | --socket PATH\n" unless defined $where;
my $listener;
if ($mode eq '--port') {
  $listener = IO::Socket::INET->new(
    LocalAddr => '127.0.0.1', LocalPort => $where, Listen => 16, ReuseAddr => 1,
  ) or die "cannot listen on 127.0.0.1:$where: $!\n";
} elsif ($mode eq '--socket') {
  unlink $where;
  $listener = IO::Socket::UNIX->new(Local => $where, Listen => 16)
    or die "cannot listen on $where: $!\n";
} else {
  die "usage: $0 --port N | --socket PATH\n";
}
$SIG{TERM} = sub { unlink $where if $mode eq '--socket'; exit 0 };
$SIG{PIPE} = 'IGNORE';
print "listening on $where\n";
STDOUT->flush;

my $scgi = SCGI->new($listener, blocking => 1);
while (my $request = $scgi->accept) {
  # A request the module rejects (no CONTENT_LENGTH first, no SCGI=1) only
  # costs its own connection.
  eval { answer($request); 1 } or warn "request failed: $@";
  $request->close;
}

sub answer {
  my ($request) = @_;
  $request->read_env;
  my $env = $request->env;
  my $conn = $request->connection;
  binmode $conn;
  my $length = $env->{CONTENT_LENGTH};
  my $body = '';
  while (length($body) < $length) {
    my $got = read $conn, my $chunk, $length - length($body);
    die "body ended early: $!" unless $got;
    $body .= $chunk;
  }
  my $path = $env->{PATH_INFO} // '';
  my $method = $env->{REQUEST_METHOD} // '';
  if ($path eq '/raw') {
    print $conn "Status: 200 OK\r\nContent-Type: application/octet-stream\r\n"
      . "Content-Length: " . length($body) . "\r\n\r\n" . $body;
  } elsif ($path =~ m{^/status/(\d+)$}) {
    print $conn "Status: $1 Whatever\r\nContent-Type: text/plain\r\n"
      . "X-Echo-Method: $method\r\n\r\nstatus $1 from perl\n";
  } elsif ($path eq '/cookies') {
    print $conn "Status: 200 OK\r\nContent-Type: text/plain\r\n"
      . "Set-Cookie: a=1; Path=/\r\nSet-Cookie: b=2; HttpOnly\r\n"
      . "Set-Cookie: c=3; Max-Age=60\r\n\r\ncookies\n";
  } else {
    my %text = map { $_ => decode('UTF-8', $env->{$_}) } keys %$env;
    my $report = JSON::PP->new->utf8->canonical->encode({
      peer => 'perl',
      method => $method,
      path => $text{PATH_INFO} // '',
      query => $text{QUERY_STRING} // '',
      env => \%text,
      bodyLength => length($body),
      bodySha256 => sha256_hex($body),
    });
    print $conn "Status: 200 OK\r\nContent-Type: application/json\r\n"
      . "Content-Length: " . length($report) . "\r\nX-Echo-Method: $method\r\n\r\n"
      . $report;
  }
}
