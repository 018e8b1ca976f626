"""The host side of the extension sandbox: what the machine allows, and how to wrap one launch.

==============  =========================================================================
module          concern
==============  =========================================================================
``probe``       which layers work here (bwrap, Landlock, seccomp, cgroup, dedicated uid),
                why the others do not, and the isolation level (strong/reduced/weak)
``bwrap``       the bubblewrap argv of one extension (pure): allow-list filesystem,
                namespaces, env, seccomp fd, uid drop in root mode
``cgroups``     one cgroup per extension: memory and pids limits for the whole tree,
                joining before exec, kill, stats (OOM kills), sweeping dead hosts' cgroups
``uids``        dedicated uid/gid per extension slot (leased), private-dir permissions,
                reachability of the interpreter by another uid
``confine``     wrapping one launch in every layer the machine allows, in order (level
                check, dedicated uid, cgroup, bwrap, boot plan): the only place they combine
==============  =========================================================================

The in-child part (rlimits, Landlock, seccomp applied by the child itself) is
:mod:`ext_sdk.sandbox`. The order of one launch, outermost first::

    [cgroup join: sh -c 'echo $$ > …/cgroup.procs …; exec "$@"']     (root; a Python launch: joined by
      bwrap … --                                                      the host while it starts instead)
        python -I -S … ext_sdk.sandbox.boot …                        (rlimits → uid → capabilities →
                                                                       Landlock → seccomp)
"""
