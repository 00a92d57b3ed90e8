package node

import (
	"testing"

	"github.com/seed0811993b/conclave/internal/leaktest"
)

func TestMain(m *testing.M) { leaktest.Main(m) }
