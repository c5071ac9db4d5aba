package kafka

import (
	"sort"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// pairBalancer assigns partitions 2k and 2k+1 of a topic to the same group
// member. Azure API Management's policy writes requests to partition 0 and their
// responses to partition 1: a member holding only one of them could pair
// nothing. (A policy that keys both messages by message id puts each pair
// in one partition, which any grouping keeps together.) With more members
// than pairs of partitions, the others stand by and take over when a member
// leaves.
type pairBalancer struct{}

func (pairBalancer) ProtocolName() string { return "apimeter-pairs" }
func (pairBalancer) IsCooperative() bool  { return false }

func (pairBalancer) JoinGroupMetadata(interests []string, _ map[string][]int32, generation int32) []byte {
	meta := kmsg.NewConsumerMemberMetadata()
	meta.Version = 3
	meta.Topics = interests
	meta.Generation = generation
	return meta.AppendTo(nil)
}

func (pairBalancer) ParseSyncAssignment(assignment []byte) (map[string][]int32, error) {
	return kgo.ParseConsumerSyncAssignment(assignment)
}

func (p pairBalancer) MemberBalancer(members []kmsg.JoinGroupResponseMember) (kgo.GroupMemberBalancer, map[string]struct{}, error) {
	b, err := kgo.NewConsumerBalancer(p, members)
	if err != nil {
		return nil, nil, err
	}
	return b, b.MemberTopics(), nil
}

func (pairBalancer) Balance(b *kgo.ConsumerBalancer, topics map[string]int32) kgo.IntoSyncAssignment {
	plan := b.NewPlan()
	names := make([]string, 0, len(topics))
	for t := range topics {
		names = append(names, t)
	}
	sort.Strings(names)
	next := 0 // spread the pairs of every topic over the members in turn
	for _, topic := range names {
		var subs []*kmsg.JoinGroupResponseMember
		b.EachMember(func(m *kmsg.JoinGroupResponseMember, meta *kmsg.ConsumerMemberMetadata) {
			for _, t := range meta.Topics {
				if t == topic {
					subs = append(subs, m)
					break
				}
			}
		})
		if len(subs) == 0 {
			continue
		}
		sort.Slice(subs, func(i, j int) bool { return subs[i].MemberID < subs[j].MemberID })
		for p := int32(0); p < topics[topic]; p += 2 {
			m := subs[next%len(subs)]
			next++
			parts := []int32{p}
			if p+1 < topics[topic] {
				parts = append(parts, p+1)
			}
			plan.AddPartitions(m, topic, parts)
		}
	}
	return plan
}
