package dev.morastream.actors.registry;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import org.apache.pekko.actor.testkit.typed.javadsl.BehaviorTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.TestInbox;
import org.apache.pekko.pattern.StatusReply;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The registry actor's protocol, synchronously (BehaviorTestKit). */
class AdapterRegistryActorTest {
    @TempDir
    Path tmp;

    @Test
    void publishAliasListAndErrorsAsReplies() throws Exception {
        BehaviorTestKit<AdapterRegistryActor.Command> kit =
                BehaviorTestKit.create(AdapterRegistryActor.create(new AdapterRegistry(tmp.resolve("reg"), 3)));
        Path adapter = Files.createDirectories(tmp.resolve("adapter"));
        Files.writeString(adapter.resolve("adapter_config.json"), "{}");

        TestInbox<StatusReply<AdapterRegistry.Entry>> entries = TestInbox.create();
        kit.run(new AdapterRegistryActor.Publish("news", adapter, Map.of("step", "10"), entries.getRef()));
        AdapterRegistry.Entry v1 = entries.receiveMessage().getValue();
        assertEquals("news@v1", v1.version().toString());
        assertEquals("10", v1.info().get("step"));
        assertTrue(Files.isRegularFile(v1.dir().resolve("adapter_config.json")));
        kit.run(new AdapterRegistryActor.Publish("news", adapter, Map.of(), entries.getRef()));
        assertEquals("news@v2", entries.receiveMessage().getValue().version().toString());

        TestInbox<StatusReply<Optional<AdapterRegistry.Entry>>> alias = TestInbox.create();
        kit.run(new AdapterRegistryActor.GetAlias("news", alias.getRef()));
        assertEquals(Optional.empty(), alias.receiveMessage().getValue());

        kit.run(new AdapterRegistryActor.SetAlias(v1.version(), entries.getRef()));
        assertEquals(v1.version(), entries.receiveMessage().getValue().version());
        kit.run(new AdapterRegistryActor.GetAlias("news", alias.getRef()));
        assertEquals(v1.version(), alias.receiveMessage().getValue().orElseThrow().version());

        TestInbox<StatusReply<List<AdapterRegistry.Entry>>> list = TestInbox.create();
        kit.run(new AdapterRegistryActor.ListVersions("news", list.getRef()));
        assertEquals(List.of("news@v1", "news@v2"), list.receiveMessage().getValue().stream().map(e -> e.version().toString()).toList());

        // errors are replies, and the actor goes on
        kit.run(new AdapterRegistryActor.SetAlias(new AdapterVersion("news", 7), entries.getRef()));
        StatusReply<AdapterRegistry.Entry> err = entries.receiveMessage();
        assertTrue(err.isError() && err.getError().getMessage().contains("no such adapter version news@v7"), String.valueOf(err));
        kit.run(new AdapterRegistryActor.Publish("bad name!", adapter, Map.of(), entries.getRef()));
        assertTrue(entries.receiveMessage().isError());
        kit.run(new AdapterRegistryActor.Publish("news", tmp.resolve("missing"), Map.of(), entries.getRef()));
        assertTrue(entries.receiveMessage().isError());
        assertTrue(kit.isAlive());
    }
}
