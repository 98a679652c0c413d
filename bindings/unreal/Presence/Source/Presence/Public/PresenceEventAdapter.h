// The Presence plugin's engine-independent core: turns presence.hpp's events and answers
// into the plain structs of PresenceTypes.h and routes each event to one sink method.
// No UObject, no delegates, no exceptions: tests/unreal compiles and runs it as ordinary
// C++17 (-fno-exceptions -fno-rtti) against a stand-in for the Core types it uses.
#pragma once

#include "CoreMinimal.h"
#include "PresenceTypes.h"
#include "presence.hpp"

#include <string>
#include <string_view>

/** Receives translated events; UPresenceSubsystem broadcasts them to Blueprint. */
class IPresenceEventSink
{
public:
    virtual ~IPresenceEventSink() = default;
    virtual void HandleUserPresenceChanged(const FPresenceChange& Change) = 0;
    virtual void HandleUserUpdated(const FString& UserId) = 0;
    virtual void HandleUserWatching(const FPresenceWatching& Watching) = 0;
    virtual void HandleMemberChanged(const FPresenceMembership& Membership) = 0;
    virtual void HandleConnectionClosed(const FPresenceConnectionClosed& Closed) = 0;
};

namespace PresenceAdapter
{
/** UTF-8 (what the engine speaks) to FString. */
inline FString ToFString(std::string_view Utf8)
{
    auto Converted = StringCast<TCHAR>(reinterpret_cast<const UTF8CHAR*>(Utf8.data()), static_cast<int32>(Utf8.size()));
    return FString(Converted.Length(), Converted.Get());
}

/** FString to UTF-8, for engine calls. */
inline std::string ToUtf8(const FString& Text)
{
    auto Converted = StringCast<UTF8CHAR>(*Text);
    return std::string(reinterpret_cast<const char*>(Converted.Get()), static_cast<size_t>(Converted.Length()));
}

/** Milliseconds since the Unix epoch to FDateTime (100 ns ticks since 0001-01-01). */
inline FDateTime ToDateTime(presence::UnixMillis UnixMs)
{
    constexpr int64 UnixEpochTicks = 621355968000000000LL;
    constexpr int64 TicksPerMillisecond = 10000;
    return FDateTime(UnixEpochTicks + UnixMs * TicksPerMillisecond);
}

inline FPresenceUser ToUser(const presence::User& User)
{
    FPresenceUser Out;
    Out.UserId = ToFString(User.id);
    Out.bOnline = User.online;
    Out.bInvisible = User.invisible.value_or(false);
    if (User.status)
    {
        Out.Status = ToFString(*User.status);
    }
    if (User.last_active_ms)
    {
        Out.LastActive = ToDateTime(*User.last_active_ms);
    }
    for (const presence::CustomField& Field : User.custom)
    {
        Out.CustomFieldNames.Add(ToFString(Field.name));
        Out.CustomFieldJson.Add(ToFString(Field.json));
    }
    return Out;
}

inline FPresenceChannelState ToChannelState(const presence::ChannelState& State)
{
    FPresenceChannelState Out;
    Out.ChannelId = ToFString(State.channel.cid);
    Out.MemberCount = static_cast<int32>(State.channel.member_count);
    Out.WatcherCount = static_cast<int32>(State.watcher_count);
    for (const presence::Member& Member : State.members)
    {
        Out.Members.Add(ToUser(Member.user));
    }
    for (const presence::User& Watcher : State.watchers)
    {
        Out.Watchers.Add(ToUser(Watcher));
    }
    return Out;
}

/** Route one event to the sink method of its kind; engine-level events (overflow, cluster
    status) and unknown kinds are not forwarded. */
inline void Dispatch(const presence::Event& Event, IPresenceEventSink& Sink)
{
    switch (Event.kind)
    {
    case presence::EventKind::user_presence_changed:
    {
        FPresenceChange Change;
        Change.UserId = ToFString(Event.user_id);
        Change.bOnline = Event.online;
        Change.bInvisible = Event.invisible;
        if (Event.status)
        {
            Change.Status = ToFString(*Event.status);
        }
        if (Event.last_active_ms)
        {
            Change.LastActive = ToDateTime(*Event.last_active_ms);
        }
        Sink.HandleUserPresenceChanged(Change);
        break;
    }
    case presence::EventKind::user_updated:
        Sink.HandleUserUpdated(ToFString(Event.user_id));
        break;
    case presence::EventKind::user_watching_start:
    case presence::EventKind::user_watching_stop:
    {
        FPresenceWatching Watching;
        Watching.UserId = ToFString(Event.user_id);
        Watching.ChannelId = ToFString(Event.cid);
        Watching.bStarted = Event.kind == presence::EventKind::user_watching_start;
        Watching.WatcherCount = static_cast<int32>(Event.watcher_count);
        Sink.HandleUserWatching(Watching);
        break;
    }
    case presence::EventKind::member_added:
    case presence::EventKind::member_removed:
    {
        FPresenceMembership Membership;
        Membership.UserId = ToFString(Event.user_id);
        Membership.ChannelId = ToFString(Event.cid);
        Membership.bAdded = Event.kind == presence::EventKind::member_added;
        Sink.HandleMemberChanged(Membership);
        break;
    }
    case presence::EventKind::connection_closed:
    {
        FPresenceConnectionClosed Closed;
        Closed.UserId = ToFString(Event.user_id);
        Closed.Reason = ToFString(Event.close_reason);
        Sink.HandleConnectionClosed(Closed);
        break;
    }
    case presence::EventKind::engine_overflow:
    case presence::EventKind::cluster_status:
    case presence::EventKind::unknown:
        break;
    }
}
} // namespace PresenceAdapter
