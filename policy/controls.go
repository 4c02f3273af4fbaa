package policy

import (
	"fmt"
	"strings"

	"github.com/sessionplane/sessionplane/runtime/config"
)

// Choice is a resolved tool_choice: auto | any | none | tool (Name set).
type Choice struct {
	Type string `json:"type"`
	Name string `json:"name,omitempty"`
}

// Controls is an active_tools / tool_choice pair. A nil Active means "no
// filter"; a nil Choice means "not set at this level".
type Controls struct {
	Active []string
	Choice *Choice
}

func toChoice(tc *config.ToolChoice) *Choice {
	if tc == nil {
		return nil
	}
	return &Choice{Type: tc.Type, Name: tc.Name}
}

// PresetControls returns a preset's tool controls.
func PresetControls(p config.Preset) Controls {
	var active []string
	if len(p.ToolControls.ActiveTools) > 0 {
		active = p.ToolControls.ActiveTools
	}
	return Controls{Active: active, Choice: toChoice(p.ToolControls.ToolChoice)}
}

// ResolveControls merges levels by precedence (first = highest: call >
// preset > agent > default): each of Active and Choice is taken from the
// first level that sets it. The result is validated: a forced tool must be
// in the active set, and "any" needs at least one active tool.
func ResolveControls(levels ...Controls) (Controls, error) {
	var out Controls
	for _, l := range levels {
		if out.Active == nil && l.Active != nil {
			out.Active = Expand(l.Active)
		}
		if out.Choice == nil && l.Choice != nil {
			c := *l.Choice
			out.Choice = &c
		}
	}
	if out.Choice == nil {
		out.Choice = &Choice{Type: "auto"}
	}
	switch out.Choice.Type {
	case "auto", "none":
	case "any":
		if out.Active != nil && len(out.Active) == 0 {
			return out, fmt.Errorf("tool_choice \"any\" needs at least one active tool, and active_tools is empty")
		}
	case "tool":
		if out.Choice.Name == "" {
			return out, fmt.Errorf("tool_choice type \"tool\" needs a name")
		}
		out.Choice.Name = Canonical(out.Choice.Name)
		if out.Active != nil && !matches(out.Active, out.Choice.Name) {
			return out, fmt.Errorf("forced tool %q is not in active_tools (%s): add it there or choose another tool", out.Choice.Name, strings.Join(out.Active, ", "))
		}
	default:
		return out, fmt.Errorf("tool_choice type %q is not auto, any, none or tool", out.Choice.Type)
	}
	return out, nil
}
