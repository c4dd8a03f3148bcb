package datapath

import "fmt"

// Priority is a transfer's share of the node's transfer budget: concurrent
// transfers get bandwidth in proportion to their Priority values.
type Priority int

// The priorities. Each value is its share weight.
const (
	VeryLow  Priority = 1
	Low      Priority = 2
	Normal   Priority = 4
	High     Priority = 8
	VeryHigh Priority = 16
)

var priorityNames = map[Priority]string{
	VeryLow:  "very-low",
	Low:      "low",
	Normal:   "normal",
	High:     "high",
	VeryHigh: "very-high",
}

// ParsePriority returns the priority named s: very-low, low, normal, high
// or very-high.
func ParsePriority(s string) (Priority, error) {
	for p, name := range priorityNames {
		if name == s {
			return p, nil
		}
	}
	return 0, fmt.Errorf("priority %q: want very-low, low, normal, high or very-high", s)
}

// String returns the name ParsePriority accepts, or priority(N) for a value
// that is not one of the priorities.
func (p Priority) String() string {
	if name, ok := priorityNames[p]; ok {
		return name
	}
	return fmt.Sprintf("priority(%d)", int(p))
}

func (p Priority) valid() bool {
	_, ok := priorityNames[p]
	return ok
}
