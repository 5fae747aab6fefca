// Package envoyrls makes the service usable as Envoy's global rate limit
// service: it implements envoy.service.ratelimit.v3.RateLimitService
// (ShouldRateLimit) on top of package limiter, with the configuration format
// of Envoy's reference rate limit service (github.com/envoyproxy/ratelimit).
//
// # Configuration
//
// A Config is a list of domain documents, each exactly like one file of the
// reference service:
//
//	domain: edge
//	descriptors:
//	  - key: remote_address            # required
//	    value: 10.0.0.1                # optional; '*' anywhere is a wildcard
//	    rate_limit:                    # optional
//	      unit: second                 # second|minute|hour|day|week|month|year
//	      requests_per_unit: 10        # required unless unlimited; 0 blocks all
//	      unlimited: false             # optional; then no unit/requests_per_unit
//	      name: per_ip                 # optional, for replaces
//	      replaces: [{name: other}]    # optional
//	    shadow_mode: false             # optional
//	    quota_mode: false              # optional
//	    share_threshold: false         # optional, wildcard values only
//	    metadata: {any: value}         # optional, see Dynamic metadata
//	    detailed_metric: false         # accepted, no effect (metrics only)
//	    value_to_metric: false         # accepted, no effect (metrics only)
//	    descriptors: [...]             # optional, nested
//
// In the server's configuration file the list is the value of the
// envoy_ratelimit section; [DecodeYAML] parses it (or *Config's UnmarshalYAML,
// so a config struct can hold a *Config field). The section may instead be a
// mapping that holds the list under domains, next to the settings that the
// reference service reads from its environment:
//
//	envoy_ratelimit:
//	  response_headers:              # LIMIT_RESPONSE_HEADERS_ENABLED and
//	    enabled: true                # LIMIT_{LIMIT,REMAINING,RESET}_HEADER
//	    limit_header: RateLimit-Limit          # default
//	    remaining_header: RateLimit-Remaining  # default
//	    reset_header: RateLimit-Reset          # default
//	  response_dynamic_metadata: true          # RESPONSE_DYNAMIC_METADATA
//	  shadow_mode: false                       # SHADOW_MODE
//	  quota_mode: false                        # QUOTA_MODE
//	  domains:
//	    - domain: edge
//	      descriptors: [...]
//
// Unknown fields, wrong types, duplicate domains and duplicate descriptors
// (same key and value on one level) are errors naming the line and the
// field. Week, month and year are fixed lengths: 7, 30 and 365 days.
//
// # Matching
//
// As in the reference: each request descriptor is matched against its
// domain's tree, one entry per level. At each level the entry matches the
// descriptor with the same key and value first, then the first wildcard of
// that key in configuration order (a value containing '*', each '*'
// matching zero or more characters: "pre*", "bar*b", "foo*bar*baz"), then
// the descriptor with the same key and no value. So an exact value is more
// specific than any wildcard, and a wildcard than no value; list overlapping
// wildcards most specific first. The limit applies only when the descriptor
// that matched the last entry has a rate_limit; when a level matches
// nothing, or a matched descriptor has no nested descriptors before the
// request's entries are used up, the descriptor has no limit. An unknown
// domain or a descriptor without a limit gets OK with no current_limit.
// A descriptor's own limit override (from Envoy's route configuration)
// replaces the configured limit when the domain is known.
//
// Every distinct list of request entries is its own bucket, in limiter key
// envoy:<domain>:<key1>=<value1>:<key2>=<value2>..., each part escaped so that
// two descriptors never share a bucket by accident ('%', ':', '=', '{', '}'
// become %25, %3A, %3D, %7B, %7D). With share_threshold, the entries matched
// through that wildcard use the wildcard ("prefix*") instead of their value, so
// all of them share one bucket.
//
// # Decisions
//
// A limit is an exact GCRA token bucket: requests_per_unit tokens refilled
// per unit, burst requests_per_unit. A request descriptor takes its
// hits_addend when set, the request's hits_addend otherwise (where 0 means
// 1); a descriptor's explicit hits_addend 0 takes nothing and asks whether
// one hit would fit now (OK with the tokens left, or OVER_LIMIT when not even
// one is there). A denied request takes nothing. requests_per_unit 0, or
// hits above requests_per_unit, is always OVER_LIMIT. Each status carries
// current_limit, limit_remaining (the whole tokens left) and
// duration_until_reset: until the bucket is full again when OK, until the
// hits would fit when OVER_LIMIT. Unlimited descriptors are OK with
// limit_remaining 4294967295, without touching the store.
//
// Every decision passes its limit to the limiter, which keeps a bucket's
// state across limit changes as tokens used, at most the new burst: a
// reload that changes a descriptor's limit, or a request whose override
// differs from the last one on the same entries (10 per day, then 42 per
// hour), starts from the tokens already used, never from the old limit's
// debt.
//
// The overall code is OVER_LIMIT when a status that is not in quota mode is
// OVER_LIMIT, or when there are quota-mode statuses and all of them are
// (the reference's rule; quota_mode on a descriptor, or on every one with
// the quota_mode setting). A quota-mode status keeps its own code.
// Descriptors of one request are decided independently (and concurrently):
// a request whose second descriptor is over its limit has still consumed the
// first one's tokens, as in the reference, which also counts every
// descriptor.
//
// Shadow mode follows the reference: a descriptor with shadow_mode that is
// over its limit reports code OK (its current_limit and limit_remaining still
// show it), so the overall code stays OK. [WithGlobalShadowMode] instead
// keeps each descriptor's real code and forces only the overall code to OK.
//
// replaces: when a request's descriptors match a limit whose rate_limit
// replaces the name of another matched limit, the replaced one is not
// checked (status OK, no current_limit). Unlimited limits are never
// replaced.
//
// # Response headers and dynamic metadata
//
// With response_headers enabled, each response that has a limited
// descriptor carries response_headers_to_add with RateLimit-Limit,
// RateLimit-Remaining and RateLimit-Reset (see [ResponseHeaders]), computed
// from the token bucket: Reset is duration_until_reset in whole seconds,
// rounded up, not the end of a fixed window.
//
// With response_dynamic_metadata, each response carries dynamic_metadata
// shaped as the reference's: "domain", "descriptors" (each with "entries" as
// "key=value" strings, and "limit" and "hitsAddend" when the request set
// them), "hitsAddend" when the request's is not 0, and "metadata": the
// metadata of the descriptors whose configured limit applied and was not
// over it (shadow mode counts as not over), merged in request order (maps
// merge key by key; otherwise the first value stays).
//
// # Errors
//
// Bad requests are INVALID_ARGUMENT naming the field: an empty domain, no
// descriptors, a descriptor without entries or with an empty entry key,
// is_negative_hits (the limiter never refunds), an invalid limit override.
// When the store fails, the limiter's AllowLocal policy decides with a local
// bucket by default (the answer is marked degraded in the gRPC response
// header resilience-degraded); an error from the limiter (policy Deny, see
// [WithFailurePolicy]) is UNAVAILABLE. A call fails as a whole when any of
// its decisions fails; the other descriptors of that call may have been
// charged already.
package envoyrls
