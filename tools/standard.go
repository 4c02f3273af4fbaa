package tools

import "github.com/sessionplane/sessionplane/runtime/cron"

// Standard is the tool set a server registers, cron over sched (which may
// be nil).
func Standard(sched *cron.Scheduler) []*Tool {
	all := append(ReadTools(), YieldTool(), SubagentsTool(), SendTool())
	all = append(all, SpawnTools()...)
	all = append(all, TaskListTool(), CronTool(sched))
	return append(all, ForkTool(), ExplainTool(), SpawnWaitTool(), ApprovalsTool())
}
