#include "PresenceSubsystem.h"

DEFINE_LOG_CATEGORY_STATIC(LogPresence, Log, All);

template <typename T>
bool UPresenceSubsystem::Succeeded(const presence::Result<T>& Result)
{
    if (Result.ok())
    {
        return true;
    }
    LastError = Engine ? PresenceAdapter::ToFString(Result.error().message()) : FString(TEXT("presence engine not initialized"));
    UE_LOG(LogPresence, Warning, TEXT("%s"), *LastError);
    return false;
}

void UPresenceSubsystem::Initialize(FSubsystemCollectionBase& Collection)
{
    Super::Initialize(Collection);
    // Manual dispatch: callbacks run only inside pump(), which Tick() calls on the game thread.
    presence::Result<presence::Engine> Created = presence::Engine::create(R"({"dispatch":"manual"})");
    if (!Created)
    {
        // Also the answer to a library whose ABI is older than presence.hpp.
        LastError = PresenceAdapter::ToFString(Created.error().message());
        UE_LOG(LogPresence, Error, TEXT("Presence engine not created: %s"), *LastError);
        return;
    }
    Engine.emplace(std::move(*Created));
    presence::Result<presence::Listener> Listener =
        Engine->add_listener([this](const presence::Event& Event) { PresenceAdapter::Dispatch(Event, *this); });
    if (Succeeded(Listener))
    {
        HostListener = std::move(*Listener);
    }
}

void UPresenceSubsystem::Deinitialize()
{
    HostListener.reset();
    Engine.reset();
    Super::Deinitialize();
}

void UPresenceSubsystem::Tick(float DeltaTime)
{
    if (!Engine)
    {
        return;
    }
    if (Succeeded(Engine->tick()))
    {
        (void)Succeeded(Engine->pump());
    }
}

TStatId UPresenceSubsystem::GetStatId() const
{
    RETURN_QUICK_DECLARE_CYCLE_STAT(UPresenceSubsystem, STATGROUP_Tickables);
}

int64 UPresenceSubsystem::Connect(const FString& UserId)
{
    if (!Engine)
    {
        return 0;
    }
    presence::Result<presence::ConnectionId> Result = Engine->connect_user(PresenceAdapter::ToUtf8(UserId));
    return Succeeded(Result) ? static_cast<int64>(*Result) : 0;
}

bool UPresenceSubsystem::Disconnect(int64 ConnectionId)
{
    return Engine && Succeeded(Engine->disconnect(static_cast<presence::ConnectionId>(ConnectionId)));
}

bool UPresenceSubsystem::Heartbeat(int64 ConnectionId)
{
    return Engine && Succeeded(Engine->heartbeat(static_cast<presence::ConnectionId>(ConnectionId)));
}

bool UPresenceSubsystem::SetStatus(const FString& UserId, const FString& Status)
{
    if (!Engine)
    {
        return false;
    }
    const std::string Text = PresenceAdapter::ToUtf8(Status);
    return Succeeded(Engine->set_status(PresenceAdapter::ToUtf8(UserId),
        Status.IsEmpty() ? std::nullopt : std::optional<std::string_view>(Text)));
}

bool UPresenceSubsystem::SetInvisible(const FString& UserId, bool bInvisible)
{
    return Engine && Succeeded(Engine->set_invisible(PresenceAdapter::ToUtf8(UserId), bInvisible));
}

namespace
{
std::vector<std::string> ToUtf8Ids(const TArray<FString>& Ids)
{
    std::vector<std::string> Out;
    Out.reserve(Ids.Num());
    for (const FString& Id : Ids)
    {
        Out.push_back(PresenceAdapter::ToUtf8(Id));
    }
    return Out;
}
} // namespace

bool UPresenceSubsystem::UpsertChannel(const FString& Type, const FString& Id, const TArray<FString>& Members)
{
    if (!Engine)
    {
        return false;
    }
    const std::string Json = std::string("{\"type\":") + presence::json_quote(PresenceAdapter::ToUtf8(Type)) +
        ",\"id\":" + presence::json_quote(PresenceAdapter::ToUtf8(Id)) +
        ",\"members\":" + presence::json_string_array(ToUtf8Ids(Members)) + "}";
    return Succeeded(Engine->upsert_channel(Json));
}

bool UPresenceSubsystem::AddMembers(const FString& ChannelId, const TArray<FString>& UserIds)
{
    return Engine && Succeeded(Engine->add_members(PresenceAdapter::ToUtf8(ChannelId), ToUtf8Ids(UserIds)));
}

bool UPresenceSubsystem::RemoveMembers(const FString& ChannelId, const TArray<FString>& UserIds)
{
    return Engine && Succeeded(Engine->remove_members(PresenceAdapter::ToUtf8(ChannelId), ToUtf8Ids(UserIds)));
}

bool UPresenceSubsystem::WatchChannel(int64 ConnectionId, const FString& ChannelId, FPresenceChannelState& OutState)
{
    if (!Engine)
    {
        return false;
    }
    presence::Result<presence::ChannelState> State =
        Engine->watch_channel(static_cast<presence::ConnectionId>(ConnectionId), PresenceAdapter::ToUtf8(ChannelId));
    if (!Succeeded(State))
    {
        return false;
    }
    OutState = PresenceAdapter::ToChannelState(*State);
    return true;
}

bool UPresenceSubsystem::StopWatching(int64 ConnectionId, const FString& ChannelId)
{
    return Engine &&
        Succeeded(Engine->stop_watching(static_cast<presence::ConnectionId>(ConnectionId), PresenceAdapter::ToUtf8(ChannelId)));
}

bool UPresenceSubsystem::GetUser(int64 Viewer, const FString& UserId, FPresenceUser& OutUser)
{
    if (!Engine)
    {
        return false;
    }
    presence::Result<presence::User> User =
        Engine->get_user(static_cast<presence::ConnectionId>(Viewer), PresenceAdapter::ToUtf8(UserId));
    if (!Succeeded(User))
    {
        return false;
    }
    OutUser = PresenceAdapter::ToUser(*User);
    return true;
}

bool UPresenceSubsystem::QueryUsers(int64 Viewer, const FString& QueryJson, TArray<FPresenceUser>& OutUsers)
{
    if (!Engine)
    {
        return false;
    }
    presence::Result<std::vector<presence::User>> Users =
        Engine->query_users(static_cast<presence::ConnectionId>(Viewer), PresenceAdapter::ToUtf8(QueryJson));
    if (!Succeeded(Users))
    {
        return false;
    }
    OutUsers.Reset();
    for (const presence::User& User : *Users)
    {
        OutUsers.Add(PresenceAdapter::ToUser(User));
    }
    return true;
}

void UPresenceSubsystem::HandleUserPresenceChanged(const FPresenceChange& Change)
{
    OnUserPresenceChanged.Broadcast(Change.UserId, Change.bOnline, Change.Status, Change.LastActive);
}

void UPresenceSubsystem::HandleUserUpdated(const FString& UserId)
{
    OnUserUpdated.Broadcast(UserId);
}

void UPresenceSubsystem::HandleUserWatching(const FPresenceWatching& Watching)
{
    OnUserWatching.Broadcast(Watching);
}

void UPresenceSubsystem::HandleMemberChanged(const FPresenceMembership& Membership)
{
    OnMemberChanged.Broadcast(Membership);
}

void UPresenceSubsystem::HandleConnectionClosed(const FPresenceConnectionClosed& Closed)
{
    OnConnectionClosed.Broadcast(Closed);
}
