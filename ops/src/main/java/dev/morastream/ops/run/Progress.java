package dev.morastream.ops.run;

import dev.morastream.actors.events.MoraEvent;
import dev.morastream.actors.serving.ServingPool;
import dev.morastream.streams.StreamStats;
import java.time.LocalTime;
import java.time.format.DateTimeFormatter;
import java.util.Collection;
import java.util.Locale;
import java.util.Map;

/** What a person watching the console sees: one line per event that matters, and a status line every 10 s. */
final class Progress {
    private final DateTimeFormatter time = DateTimeFormatter.ofPattern("HH:mm:ss");
    private final Map<String, double[]> loss = new java.util.concurrent.ConcurrentHashMap<>(); // domain -> {step, progressive}

    void say(String line) {
        System.out.println(LocalTime.now().format(time) + " " + line);
        System.out.flush();
    }

    void on(MoraEvent e) {
        if (e instanceof MoraEvent.Stepped s) {
            loss.put(s.domain(), new double[] {s.step(), s.lossBefore()});
        } else if (e instanceof MoraEvent.TrainFailed f) {
            say("trainer " + f.domain() + ": " + f.message() + " -> restarting from its last checkpoint");
        } else if (e instanceof MoraEvent.Checkpointed c) {
            say(String.format(Locale.ROOT, "trainer %s: checkpoint at step %d (%.0f ms)", c.domain(), c.step(), c.nanos() / 1e6));
        } else if (e instanceof MoraEvent.Evaluated v) {
            var c = v.evaluation().candidate();
            var sv = v.evaluation().serving();
            var base = v.evaluation().base();
            boolean facts = Double.isFinite(c.memorizationCharAcc());
            say(String.format(Locale.ROOT, "evaluator: %s memorisation %s %.2f vs %s %.2f, worst downstream drop vs base %.3f%s,"
                            + " KL to base %.4f, retention loss %.3f vs base %.3f (%.1f s)",
                    v.candidate(), facts ? "char_acc" : "loss", facts ? c.memorizationCharAcc() : c.memorizationLoss(),
                    v.serving().map(Object::toString).orElse("base"), facts ? sv.memorizationCharAcc() : sv.memorizationLoss(),
                    c.worstDownstreamDrop(base), worstSet(c, base), c.klToBase(), c.retentionLoss(), base.retentionLoss(),
                    v.nanos() / 1e9));
        } else if (e instanceof MoraEvent.Decided d) {
            switch (d.decision()) {
                case PROMOTED -> say("PROMOTED " + d.version() + ": now serving it as model '" + d.domain() + "'");
                case PROMOTED_BY_ADMIN, ROLLED_BACK -> say(d.decision().id() + ": " + d.domain() + " -> " + d.version() + " ("
                        + String.join("; ", d.reasons()) + ")");
                default -> say(d.decision().id() + " " + d.version() + ": " + String.join("; ", d.reasons()));
            }
        } else if (e instanceof MoraEvent.MemberChanged m) {
            say("cluster: " + m.address() + " " + m.roles() + " is " + m.status() + (m.self() ? " (this node)" : ""));
        } else if (e instanceof MoraEvent.StateRepaired r) {
            say("DAMAGED STATE " + r.action() + ": " + r.file() + " (" + r.reason() + ")");
        } else if (e instanceof MoraEvent.AuditFailed a) {
            say("audit log not writable (" + a.error() + "): " + a.pending() + " decision(s) kept, retrying");
        }
    }

    /** " (set)" naming the set of the worst drop, or "" when nothing dropped. */
    private static String worstSet(dev.morastream.actors.supervisor.Scores c, dev.morastream.actors.supervisor.Scores base) {
        String worst = null;
        double drop = 0;
        for (var e : base.downstream().entrySet()) {
            double d = e.getValue() - c.downstream().getOrDefault(e.getKey(), 0.0);
            if (d > drop) {
                drop = d;
                worst = e.getKey();
            }
        }
        return worst == null ? "" : " (" + worst + ")";
    }

    /**
     * @param trains whether this node trains (else the line is only what it serves)
     * @param domains the domains whose serving version is shown
     */
    void status(StreamStats stats, boolean trains, Collection<String> domains, ServingPool pool) {
        StringBuilder sb = new StringBuilder(trains ? String.format(Locale.ROOT, "records: %d consumed, %d trained, %d dead-lettered",
                stats.decoded.get(), stats.recordsTrained.get(), stats.rejected.get()) : "serving node");
        loss.forEach((d, v) -> sb.append(String.format(Locale.ROOT, " | %s: step %d, loss %.3f", d, (long) v[0], v[1])));
        for (String d : domains) {
            sb.append(" | serving ").append(pool.serving(d).map(Object::toString).orElse(d + ": base"));
        }
        say(sb.toString());
    }
}
