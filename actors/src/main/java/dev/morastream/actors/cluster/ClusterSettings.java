package dev.morastream.actors.cluster;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigFactory;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.regex.Pattern;

/**
 * How a node joins a Pekko Cluster ({@code morastream.cluster}): off (one node, the default) until
 * it has an artery port; then the nodes at {@code seedNodes} are contacted to join (none: this node
 * starts the cluster), and its roles say what it runs.
 *
 * @param host the address other nodes reach this node on
 * @param port artery TCP port ({@code 0}: no cluster)
 * @param seedNodes {@code host:port} of the nodes to join
 * @param roles {@link #TRAINER} (trains the stream's domains and decides their promotions) and/or
 *     {@link #SERVING} (answers the OpenAI-compatible API)
 */
public record ClusterSettings(String host, int port, List<String> seedNodes, Set<String> roles) {
    public static final String TRAINER = "trainer";
    public static final String SERVING = "serving";
    private static final Pattern HOST_PORT = Pattern.compile("[A-Za-z0-9_.:\\[\\]-]+:[0-9]{1,5}");

    public ClusterSettings {
        seedNodes = List.copyOf(seedNodes);
        roles = Set.copyOf(new LinkedHashSet<>(roles));
        if (port < 0 || port > 65535) {
            throw new IllegalArgumentException("cluster port " + port + " is not a port (1-65535, or 0 for no cluster)");
        }
        if (roles.isEmpty()) {
            throw new IllegalArgumentException("a node needs at least one role: " + TRAINER + " and/or " + SERVING);
        }
        for (String r : roles) {
            if (!r.equals(TRAINER) && !r.equals(SERVING)) {
                throw new IllegalArgumentException("unknown role '" + r + "': the roles are " + TRAINER + " and " + SERVING);
            }
        }
        for (String s : seedNodes) {
            if (!HOST_PORT.matcher(s).matches()) {
                throw new IllegalArgumentException("seed node '" + s + "' is not HOST:PORT");
            }
        }
        if (port == 0 && !seedNodes.isEmpty()) {
            throw new IllegalArgumentException("seed nodes " + seedNodes + " given without a cluster port for this node");
        }
    }

    /** One node, both roles, no cluster. */
    public static ClusterSettings single() {
        return new ClusterSettings("127.0.0.1", 0, List.of(), Set.of(TRAINER, SERVING));
    }

    public boolean enabled() {
        return port > 0;
    }

    public boolean trains() {
        return roles.contains(TRAINER);
    }

    public boolean serves() {
        return roles.contains(SERVING);
    }

    /**
     * The Pekko settings that make {@code systemName} a cluster node (empty when the cluster is
     * off): provider, artery address, seed nodes (this node itself when none), roles. The
     * split-brain resolver and the serialization bindings are in the actors' {@code reference.conf}.
     */
    public Config pekkoConfig(String systemName) {
        if (!enabled()) {
            return ConfigFactory.empty();
        }
        List<String> seeds = (seedNodes.isEmpty() ? List.of(host + ":" + port) : seedNodes).stream()
                .map(s -> "pekko://" + systemName + "@" + s).toList();
        Map<String, Object> c = new LinkedHashMap<>();
        c.put("pekko.actor.provider", "cluster");
        c.put("pekko.remote.artery.canonical.hostname", host);
        c.put("pekko.remote.artery.canonical.port", port);
        c.put("pekko.cluster.seed-nodes", seeds);
        c.put("pekko.cluster.roles", List.copyOf(roles));
        return ConfigFactory.parseMap(c, "morastream.cluster");
    }
}
