/* SPDX-License-Identifier: Apache-2.0 */
#include "supervisor/cgroup-events.h"

#include <sys/epoll.h>

void aj_sup_cgroup_events_init(AjSupCgroupEvents *c, AjCgroup *cgroup, uint64_t memory_max, uint64_t pids_max,
                               const AjSupSink *events)
{
        *c = (AjSupCgroupEvents){ .cgroup = cgroup, .events = *events, .memory_max = memory_max, .pids_max = pids_max };
}

void aj_sup_cgroup_events_check(AjSupCgroupEvents *c)
{
        AjCgroupStats st;
        if (!c->cgroup || aj_cgroup_stats(c->cgroup, &st) < 0)
                return;
        const AjSupSinkOps *ops = c->events.ops;
        if (st.oom_kills > c->last.oom_kills)
                ops->emit_agent(c->events.userdata, "oom",
                                json_pack("{s:I, s:I}", "oom_kills", (json_int_t)st.oom_kills, "memory_max",
                                          (json_int_t)c->memory_max));
        if (st.pids_max_events > c->last.pids_max_events)
                ops->emit_agent(c->events.userdata, "pids.max",
                                json_pack("{s:I, s:I}", "events", (json_int_t)st.pids_max_events, "pids_max",
                                          (json_int_t)c->pids_max));
        if (st.memory_peak < c->last.memory_peak)
                st.memory_peak = c->last.memory_peak;
        c->last = st;
}

static void on_event(AjLoopIo *io, int fd, uint32_t revents, void *userdata)
{
        (void)io, (void)fd, (void)revents;
        AjSupCgroupEvents *c = userdata;
        aj_cgroup_event_ack(c->cgroup);
        aj_sup_cgroup_events_check(c);
}

int aj_sup_cgroup_events_start(AjSupCgroupEvents *c, AjLoop *loop)
{
        int fd = c->cgroup ? aj_cgroup_event_fd(c->cgroup) : -1;
        if (fd < 0)
                return 0;
        return aj_loop_add_io(loop, fd, EPOLLIN | EPOLLPRI, on_event, c, &c->io);
}

const AjCgroupStats *aj_sup_cgroup_events_stats(const AjSupCgroupEvents *c) { return &c->last; }

void aj_sup_cgroup_events_stop(AjSupCgroupEvents *c)
{
        aj_loop_io_remove(c->io);
        c->io = NULL;
}
