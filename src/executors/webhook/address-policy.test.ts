import { describe, expect, it } from 'vitest';
import { classifyAddress, refusedHost, refusedHostname } from './address-policy.ts';

describe('classifyAddress', () => {
  it.each([
    // Public unicast, including the edges of the private blocks.
    ['8.8.8.8', 'unicast'],
    ['93.184.216.34', 'unicast'],
    ['11.0.0.0', 'unicast'],
    ['172.15.255.255', 'unicast'],
    ['172.32.0.0', 'unicast'],
    ['100.63.255.255', 'unicast'],
    ['100.128.0.0', 'unicast'],
    ['169.253.255.255', 'unicast'],
    ['2606:4700:4700::1111', 'unicast'],
    ['2001:4860:4860::8888', 'unicast'],
    ['::ffff:8.8.8.8', 'unicast'],
    ['64:ff9b::808:808', 'unicast'],
  ])('%s is allowed (%s)', (address, range) => {
    expect(classifyAddress(address)).toEqual({ allowed: true, range });
  });

  it.each([
    ['127.0.0.1', 'loopback'],
    ['127.255.255.254', 'loopback'],
    ['10.0.0.1', 'private'],
    ['172.16.0.1', 'private'],
    ['172.31.255.255', 'private'],
    ['192.168.1.1', 'private'],
    ['169.254.169.254', 'linkLocal'], // AWS, GCP and Azure metadata
    ['169.254.0.1', 'linkLocal'],
    ['100.64.0.1', 'carrierGradeNat'],
    ['100.100.100.200', 'carrierGradeNat'], // Alibaba metadata
    ['100.127.255.254', 'carrierGradeNat'],
    ['0.0.0.0', 'unspecified'],
    ['0.1.2.3', 'unspecified'],
    ['255.255.255.255', 'broadcast'],
    ['224.0.0.1', 'multicast'],
    ['239.255.255.250', 'multicast'],
    ['240.0.0.1', 'reserved'],
    ['192.0.2.1', 'reserved'],
    ['198.18.0.1', 'reserved'],
    ['192.0.0.192', 'reserved'], // Oracle Cloud metadata
    ['::1', 'loopback'],
    ['[::1]', 'loopback'],
    ['::', 'unspecified'],
    ['fc00::1', 'uniqueLocal'],
    ['fd00:ec2::254', 'uniqueLocal'], // AWS IPv6 metadata
    ['fe80::1', 'linkLocal'],
    ['fe80::1%eth0', 'linkLocal'],
    ['febf:ffff::1', 'linkLocal'],
    ['ff02::1', 'multicast'],
    ['fec0::1', 'deprecatedSiteLocal'],
    ['2001:db8::1', 'reserved'],
    ['::ffff:127.0.0.1', 'ipv4Mapped:loopback'],
    ['::ffff:7f00:1', 'ipv4Mapped:loopback'],
    ['::ffff:10.0.0.1', 'ipv4Mapped:private'],
    ['::ffff:169.254.169.254', 'ipv4Mapped:linkLocal'],
    ['::ffff:100.64.0.1', 'ipv4Mapped:carrierGradeNat'],
    ['::ffff:0.0.0.0', 'ipv4Mapped:unspecified'],
    ['64:ff9b::7f00:1', 'rfc6052:loopback'],
    ['64:ff9b::a9fe:a9fe', 'rfc6052:linkLocal'],
    ['2002:7f00:1::1', '6to4:loopback'],
    ['2002:c0a8:101::1', '6to4:private'],
    ['::7f00:1', 'ipv4Compatible'],
    ['::a00:1', 'ipv4Compatible'],
  ])('%s is refused (%s)', (address, range) => {
    expect(classifyAddress(address)).toEqual({ allowed: false, range });
  });

  it('refuses the dotted IPv4-compatible spelling whichever way ipaddr.js reads it', () => {
    expect(classifyAddress('::127.0.0.1').allowed).toBe(false);
  });

  it.each(['localhost', 'example.com', '2130706433', '0x7f.1', '127.1', '0177.0.0.1', '', '1.2.3.4.5'])(
    '%j is not an address and is refused as such',
    (input) => {
      expect(classifyAddress(input)).toEqual({ allowed: false, range: 'not_an_ip' });
    },
  );
});

describe('refusedHostname', () => {
  it.each(['localhost', 'LOCALHOST', 'localhost.', 'api.localhost', 'metadata', 'metadata.google.internal', 'metadata.goog',
    'instance-data', 'instance-data.ec2.internal', 'printer.local', 'router.home.arpa', ''])('refuses %j', (name) => {
    expect(refusedHostname(name)).not.toBeNull();
  });

  it.each(['example.com', 'hooks.example.test', 'localhost.example.com', 'internal.example.com'])('lets %j go on to resolution', (name) => {
    expect(refusedHostname(name)).toBeNull();
  });
});

describe('refusedHost', () => {
  it('judges IP literals, bracketed or not, and names', () => {
    expect(refusedHost('127.0.0.1')).toBe('127.0.0.1 is a loopback address');
    expect(refusedHost('[::1]')).toBe('::1 is a loopback address');
    expect(refusedHost('[::ffff:7f00:1]')).toBe('::ffff:7f00:1 is a ipv4Mapped:loopback address');
    expect(refusedHost('169.254.169.254')).toBe('169.254.169.254 is a linkLocal address');
    expect(refusedHost('localhost')).toMatch(/local or metadata/);
    expect(refusedHost('8.8.8.8')).toBeNull();
    expect(refusedHost('[2606:4700:4700::1111]')).toBeNull();
    expect(refusedHost('example.com')).toBeNull();
  });
});
