package timerslack

import (
	"testing"
	"time"
)

func TestApplyArguments(t *testing.T) {
	for _, tc := range []struct {
		d       time.Duration
		wantErr bool
	}{
		{0, false},  // the kernel's default stays
		{-1, false}, // likewise
		{2 * time.Second, true},
	} {
		if err := Apply(tc.d); (err != nil) != tc.wantErr {
			t.Errorf("Apply(%s) = %v, want error %v", tc.d, err, tc.wantErr)
		}
	}
}
