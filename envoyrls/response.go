package envoyrls

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	commonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// values returns the rate limit headers of a response, or nil when no
// descriptor has a limit. As in the reference, they describe the last
// descriptor over its limit that is not in quota mode, or else the first
// with the fewest tokens left.
func (h *headerNames) values(t *table, checks []check, statuses []*ratelimitv3.RateLimitResponse_DescriptorStatus) []*corev3.HeaderValue {
	var pick *ratelimitv3.RateLimitResponse_DescriptorStatus
	least := uint32(math.MaxUint32)
	for i, st := range statuses {
		r := checks[i].rule
		if r == nil || r.unlimited || st.GetCurrentLimit() == nil {
			continue
		}
		if st.GetLimitRemaining() < least {
			pick, least = st, st.GetLimitRemaining()
		}
		if st.GetCode() == ratelimitv3.RateLimitResponse_OVER_LIMIT && !t.quota && !r.quota {
			pick, least = st, 0
		}
	}
	if pick == nil {
		return nil
	}
	return []*corev3.HeaderValue{
		{Key: h.limit, Value: strconv.FormatUint(uint64(pick.GetCurrentLimit().GetRequestsPerUnit()), 10)},
		{Key: h.remaining, Value: strconv.FormatUint(uint64(pick.GetLimitRemaining()), 10)},
		{Key: h.reset, Value: strconv.FormatInt(ceilSeconds(pick.GetDurationUntilReset().AsDuration()), 10)},
	}
}

// ceilSeconds is d in whole seconds, rounded up (a client that waits that
// long is not early).
func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}

// dynamicMetadata is the response's dynamic_metadata, shaped as the
// reference's: the domain, the request's descriptors (entries as
// "key=value", their limit override and hits_addend when set), the
// request's hits_addend when not 0, and under "metadata" the metadata of
// every descriptor whose limit applied and was not over it, merged (the
// first descriptor's value wins a conflict; maps merge key by key).
func dynamicMetadata(req *ratelimitv3.RateLimitRequest, checks []check, statuses []*ratelimitv3.RateLimitResponse_DescriptorStatus) *structpb.Struct {
	fields := map[string]*structpb.Value{"domain": structpb.NewStringValue(req.GetDomain())}
	descs := make([]*structpb.Value, 0, len(req.GetDescriptors()))
	for _, d := range req.GetDescriptors() {
		descs = append(descs, structpb.NewStructValue(descriptorStruct(d)))
	}
	fields["descriptors"] = structpb.NewListValue(&structpb.ListValue{Values: descs})
	if h := req.GetHitsAddend(); h != 0 {
		fields["hitsAddend"] = structpb.NewNumberValue(float64(h))
	}
	merged := &structpb.Struct{Fields: map[string]*structpb.Value{}}
	for i, st := range statuses {
		r := checks[i].rule
		if r == nil || r.unlimited || r.metadata == nil || st.GetCode() == ratelimitv3.RateLimitResponse_OVER_LIMIT {
			continue
		}
		mergeStruct(merged, r.metadata)
	}
	if len(merged.GetFields()) > 0 {
		fields["metadata"] = structpb.NewStructValue(merged)
	}
	return &structpb.Struct{Fields: fields}
}

func descriptorStruct(d *commonv3.RateLimitDescriptor) *structpb.Struct {
	entries := make([]*structpb.Value, 0, len(d.GetEntries()))
	for _, e := range d.GetEntries() {
		entries = append(entries, structpb.NewStringValue(e.GetKey()+"="+e.GetValue()))
	}
	fields := map[string]*structpb.Value{"entries": structpb.NewListValue(&structpb.ListValue{Values: entries})}
	if ov := d.GetLimit(); ov != nil {
		fields["limit"] = structpb.NewStringValue(overrideText(ov))
	}
	if h := d.GetHitsAddend(); h != nil {
		fields["hitsAddend"] = structpb.NewNumberValue(float64(h.GetValue()))
	}
	return &structpb.Struct{Fields: fields}
}

// overrideText is ov in protobuf text format, as the reference reports it
// ("requests_per_unit:42 unit:HOUR"), without the random spacing that
// protobuf-go adds to discourage parsing its output.
func overrideText(ov *commonv3.RateLimitDescriptor_RateLimitOverride) string {
	var parts []string
	if n := ov.GetRequestsPerUnit(); n != 0 {
		parts = append(parts, fmt.Sprintf("requests_per_unit:%d", n))
	}
	if u := ov.GetUnit(); u != 0 {
		parts = append(parts, "unit:"+u.String())
	}
	if m := ov.GetUnitMultiplier(); m != nil {
		parts = append(parts, fmt.Sprintf("unit_multiplier:{value:%d}", m.GetValue()))
	}
	return strings.Join(parts, " ")
}

// mergeStruct adds src's fields to dst: a field dst lacks is copied; when
// both hold a struct, they merge recursively; otherwise dst keeps its own.
// src is never changed, nor shared with dst.
func mergeStruct(dst, src *structpb.Struct) {
	if dst.Fields == nil {
		dst.Fields = map[string]*structpb.Value{}
	}
	for k, v := range src.GetFields() {
		cur, ok := dst.GetFields()[k]
		switch {
		case !ok:
			dst.Fields[k] = proto.Clone(v).(*structpb.Value)
		case cur.GetStructValue() != nil && v.GetStructValue() != nil:
			mergeStruct(cur.GetStructValue(), v.GetStructValue())
		}
	}
}
